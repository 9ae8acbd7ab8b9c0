"""``--device``/``--torch_dtype`` reach every command that loads a model for inference (CPU here; CUDA by the same path)."""

import pytest
import torch

from launch.cli import main
from models.loading.pretrained import resolve_device, resolve_dtype
from tests.models.transmitter_fixtures import save_tiny_lm


def test_resolve_device_and_dtype(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype(None) is None and resolve_dtype("auto") is None
    with pytest.raises(ValueError, match="torch_dtype"):
        resolve_dtype("int8")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("tiny_dev"), seed=2)


@pytest.fixture()
def loads(monkeypatch):
    """Record the device and dtype of every Transmitter loaded."""
    from models.networks.transmitter import Transmitter

    seen = []
    real = Transmitter.from_pretrained.__func__

    def spy(cls, name, **kw):
        model = real(cls, name, **kw)
        seen.append((str(next(model.lm.parameters()).device), next(model.lm.parameters()).dtype))
        return model

    monkeypatch.setattr(Transmitter, "from_pretrained", classmethod(spy))
    return seen


def test_eval_chat_and_selfplay_eval_load_on_the_device_in_the_dtype(tiny, tiny_receiver_dir, tmp_path, loads):
    common = ["--device", "cpu", "--torch_dtype", "bfloat16"]
    assert main(["eval", "--model", str(tiny), "--max_dialogues", "2", "--examples_per_dialogue", "1", "--num_candidates", "4", "--metrics",
                 "f1,ppl", "--max_new_tokens", "3", "--output_dir", str(tmp_path / "e"), *common]) == 0
    assert main(["chat", "--model", str(tiny), "--exchanges", "1", "--max_new_tokens", "3", *common]) == 0
    assert main(["eval", "--selfplay", "--model", str(tiny), "--judge_lm", str(tiny), "--judge_encoder",
                 str(tiny_receiver_dir), "--pairs", "2", "--dialogues_per_pair", "1", "--exchanges", "1",
                 "--max_new_tokens", "3", "--bootstrap_samples", "20", "--output_dir", str(tmp_path / "s"), *common]) == 0
    assert len(loads) == 4 and all(entry == ("cpu", torch.bfloat16) for entry in loads)
    assert main(["eval", "--model", str(tiny), "--torch_dtype", "int8"]) == 2
