"""``push_to_hub`` / ``from_pretrained("user/repo")`` against a fake Hub: the real folder that ``upload_folder`` is
given is stored, and downloads serve it back filtered by the real ``allow_patterns``."""

import fnmatch
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub.errors import EntryNotFoundError
from safetensors.torch import load_file

from models.infra.hub import local_snapshot
from models.networks.transmitter import HEADS_FILE, META_FILE, Transmitter
from tests.models.transmitter_fixtures import tiny_transmitter


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch):
    store, calls = tmp_path / "hub", []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None):
            calls.append(("create_repo", repo_id, private))
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, repo_type=None):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            shutil.rmtree(store / repo_id, ignore_errors=True)
            shutil.copytree(folder_path, store / repo_id)
            return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    def hf_hub_download(repo_id, filename, *, revision=None):
        path = store / repo_id / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{repo_id}/{filename}")
        return str(path)

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None):
        out = tmp_path / "cache" / repo_id.replace("/", "--")
        for f in (store / repo_id).iterdir():
            if allow_patterns is None or any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, out / f.name)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return store, calls


def test_transmitter_push_and_load_back_with_heads(fake_hub):
    store, calls = fake_hub
    model = tiny_transmitter(seed=3, with_value_head=True)
    with torch.no_grad():
        model.value_head.weight.normal_()  # a trained value head, not the zero init a fresh load would give
    url = model.push_to_hub("user/persona-bot", private=True)
    assert url == "https://huggingface.co/user/persona-bot/commit/abc"
    assert calls[0] == ("create_repo", "user/persona-bot", True)
    uploaded = set(calls[1][2])
    assert {HEADS_FILE, META_FILE, "README.md", "model.safetensors", "config.json", "tokenizer.json"} <= uploaded
    back = Transmitter.from_pretrained("user/persona-bot")
    assert back.value_head is not None
    for name, tensor in model.heads_state_dict().items():
        assert torch.equal(back.heads_state_dict()[name], tensor), name
    lm = load_file(str(store / "user/persona-bot" / "model.safetensors"))
    assert all(torch.equal(back.lm.state_dict()[k], v) for k, v in lm.items())


def test_receiver_push_and_load_back(fake_hub, tiny_receiver_dir):
    from models.networks.receiver import Receiver

    receiver = Receiver.from_pretrained(tiny_receiver_dir, temperature=0.07, max_length=40)
    receiver.push_to_hub("user/receiver")
    back = Receiver.from_pretrained("user/receiver")
    assert (back.temperature, back.max_length) == (0.07, 40)
    texts = ["i love jazz", "i am a nurse"]
    assert torch.equal(back.embed(texts), receiver.embed(texts))


def test_a_repo_without_p2bot_files_is_left_to_transformers(fake_hub, tmp_path):
    store, _ = fake_hub
    (store / "org/plain-lm").mkdir(parents=True)
    (store / "org/plain-lm" / "config.json").write_text("{}")
    assert local_snapshot("org/plain-lm", META_FILE) == "org/plain-lm"
    assert local_snapshot(str(tmp_path), META_FILE) == str(tmp_path)


def test_a_p2bot_repo_whose_heads_did_not_come_is_refused_naming_repo_and_file(fake_hub):
    store, _ = fake_hub
    tiny_transmitter(seed=3, with_value_head=True).push_to_hub("user/headless")
    (store / "user/headless" / HEADS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"user/headless: .*without its {HEADS_FILE}"):
        Transmitter.from_pretrained("user/headless")


def test_a_p2bot_repo_whose_snapshot_fails_is_refused_naming_the_repo(fake_hub, monkeypatch):
    tiny_transmitter(seed=3).push_to_hub("user/flaky")

    def broken_snapshot(repo_id, *, revision=None, allow_patterns=None):
        raise OSError("connection reset")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken_snapshot)
    with pytest.raises(OSError, match=f"'user/flaky' is a p2bot checkpoint \\({META_FILE}\\).*connection reset"):
        Transmitter.from_pretrained("user/flaky")


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    """A real hub cache layout under tmp_path, read by the real huggingface_hub in offline mode."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def cached_repo(repo_id: str, files: dict[str, str], no_exist: tuple[str, ...] = ()) -> Path:
        repo, commit = tmp_path / "hf" / f"models--{repo_id.replace('/', '--')}", "a" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True)
        for name, text in files.items():
            (repo / "snapshots" / commit / name).write_text(text)
        for name in no_exist:
            (repo / ".no_exist" / commit).mkdir(parents=True, exist_ok=True)
            (repo / ".no_exist" / commit / name).touch()
        return repo / "snapshots" / commit

    return cached_repo


def test_offline_a_repo_the_cache_cannot_classify_is_refused_naming_repo_and_marker(offline_cache):
    offline_cache("org/unknown", {"tokenizer.json": "{}"})
    with pytest.raises(OSError, match=f"'org/unknown': cannot tell whether it is a p2bot checkpoint \\({META_FILE}"):
        local_snapshot("org/unknown", META_FILE)


def test_offline_a_cached_plain_download_loads_plainly_and_says_so(offline_cache, caplog):
    offline_cache("org/downloaded", {"config.json": "{}"})
    with caplog.at_level("WARNING", logger="models.infra.hub"):
        assert local_snapshot("org/downloaded", META_FILE) == "org/downloaded"
    assert f"'org/downloaded': offline and {META_FILE} is not in the cache" in caplog.text


def test_offline_the_cache_decides_plain_or_p2bot(offline_cache):
    offline_cache("org/plain", {"config.json": "{}"}, no_exist=(META_FILE,))
    assert local_snapshot("org/plain", META_FILE) == "org/plain"
    snapshot = offline_cache("user/bot", {"config.json": "{}", META_FILE: "{}", HEADS_FILE: ""})
    assert Path(local_snapshot("user/bot", META_FILE)) == snapshot
