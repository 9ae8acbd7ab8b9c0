"""Shared helpers for the Transmitter tests: the real SmolLM2 tokenizer and tiny random Llamas on it."""

from __future__ import annotations

from functools import cache

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from models.loading.embedded import embedded_policy_path
from models.networks.transmitter import Transmitter

PERSONA = ["i love hiking in the mountains.", "i have two cats.", "my favourite food is pizza."]
HISTORY = ["hi! how are you today?", "great, just back from a long hike.", "nice, where did you go?"]


@cache
def smollm2_tokenizer():
    """The embedded policy's tokenizer (the first call converts the GGUF once, ~1 min; then cached on disk)."""
    return AutoTokenizer.from_pretrained(embedded_policy_path())


def tiny_lm(tokenizer, seed: int = 0, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.1)
    return LlamaForCausalLM(cfg).eval()


def tiny_transmitter(seed: int = 0, with_value_head: bool = False) -> Transmitter:
    tok = smollm2_tokenizer()
    return Transmitter(tiny_lm(tok, seed), tok, with_value_head=with_value_head, base_name="tiny")


def save_tiny_lm(path, seed: int = 0):
    tok = smollm2_tokenizer()
    tiny_lm(tok, seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path
