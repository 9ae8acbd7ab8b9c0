"""Shared fixtures for tests/launch: a tiny policy that says one word, whatever it is asked."""

import pytest
import torch
from transformers import PhiConfig, PhiForCausalLM

from tests.models.transmitter_fixtures import smollm2_tokenizer

WORD = " dog"  # one SmolLM2 token


def save_one_word_lm(path, word: str = WORD):
    """A tiny Phi over the SmolLM2 tokenizer whose logits are its LM-head bias: ``word`` +30, every other token -30.

    It emits ``word`` at every step, sampled or greedy (never its end marker), so every turn of ``max_new_tokens``
    tokens is ``word`` repeated: its lexical judges are known by hand.
    """
    tok = smollm2_tokenizer()
    (token,) = tok.encode(word)
    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = PhiForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(-30.0)
        model.lm_head.bias[token] = 30.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def one_word_policy(tmp_path_factory):
    return save_one_word_lm(tmp_path_factory.mktemp("one_word"))
