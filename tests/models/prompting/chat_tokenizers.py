"""Tokenizers built here in the layouts of four chat-model families (nothing can be downloaded in the tests).

Each is a real ``tokenizers`` BPE model trained on the sample dialogues, with that family's special tokens, wrapped
in ``PreTrainedTokenizerFast``, and a chat template written for these tests that lays turns out the way the family
does:

- ``llama3``: BOS, ``<|start_header_id|>role<|end_header_id|>\\n\\n`` headers, ``<|eot_id|>`` ends a turn, and (as in
  Llama 3.1) a system block with a knowledge-date preamble whether or not a system message is given;
- ``gemma``: no system role (a system message raises), user/model turns must alternate starting with the user,
  ``<start_of_turn>`` / ``<end_of_turn>``;
- ``gemma3``: like ``gemma`` but a system message is folded into the first user turn, followed by a blank line;
- ``qwen``: ChatML with a default system message when none is given;
- ``mistral``: ``[INST] ... [/INST]`` control tokens, replies end with ``</s>``, roles must alternate, a system
  message goes into the last user turn, and there is no generation prompt (the reply follows ``[/INST]``).

The byte-level families (``llama3``, ``qwen``) use a byte-level pre-tokenizer; the SentencePiece-style ones
(``gemma*``, ``mistral``) use a metaspace one (``mistral`` prepends a space to the first word, ``gemma`` never).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SAMPLE = Path(__file__).resolve().parents[3] / "data_prep" / "sample_data" / "sample_dialogues.jsonl"

_ALTERNATE = ("{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}{% endif %}")

TEMPLATES = {
    "llama3": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] | trim %}"
        "{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}"
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 1 Jan 2026\n\n{{ sys }}<|eot_id|>"
        "{% for m in rest %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
        "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}" + _ALTERNATE +
        "{% if m['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = m['role'] %}{% endif %}"
        "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "gemma3": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
        "{% set rest = messages[1:] %}{% else %}{% set first = '' %}{% set rest = messages %}{% endif %}"
        "{% for m in rest %}" + _ALTERNATE +
        "{% if m['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = m['role'] %}{% endif %}"
        "<start_of_turn>{{ role }}\n{% if loop.first %}{{ first }}{% endif %}{{ m['content'] | trim }}<end_of_turn>\n"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "qwen": (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
        "{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}"
        "{% for m in rest %}" + _ALTERNATE +
        "{% if m['role'] == 'user' %}[INST] {% if loop.last and sys %}{{ sys }}\n\n{% endif %}{{ m['content'] }}[/INST]"
        "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
}

SPECIAL = {
    "llama3": dict(bos="<|begin_of_text|>", eos="<|end_of_text|>",
                   extra=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "gemma": dict(bos="<bos>", eos="<eos>", extra=["<start_of_turn>", "<end_of_turn>"]),
    "gemma3": dict(bos="<bos>", eos="<eos>", extra=["<start_of_turn>", "<end_of_turn>"]),
    "qwen": dict(bos=None, eos="<|endoftext|>", extra=["<|im_start|>", "<|im_end|>"]),
    "mistral": dict(bos="<s>", eos="</s>", extra=["[INST]", "[/INST]"]),
}
# the token that ends an assistant turn in each family's layout
END_OF_TURN = {"llama3": "<|eot_id|>", "gemma": "<end_of_turn>", "gemma3": "<end_of_turn>", "qwen": "<|im_end|>",
               "mistral": "</s>"}


def _corpus() -> list[str]:
    texts = []
    for line in SAMPLE.read_text().splitlines():
        d = json.loads(line)
        texts += d["persona_a"] + d["persona_b"] + d["turns"]
    return texts + ["You are chatting with a new friend. Your persona:", "Cutting Knowledge Date: December 2023"]


@cache
def chat_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A trained BPE tokenizer with ``family``'s special tokens and chat template (see the module docstring)."""
    spec = SPECIAL[family]
    special = [t for t in ("<unk>", "<pad>", spec["bos"], spec["eos"], *spec["extra"]) if t]
    if family in ("llama3", "qwen"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        scheme = "first" if family == "mistral" else "never"
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme)
        tok.decoder = decoders.Metaspace(prepend_scheme=scheme)
        alphabet = [chr(c) for c in range(32, 127)] + ["\n", "▁"]
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=special, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token=spec["bos"],
                                  eos_token=spec["eos"])
    out.chat_template = TEMPLATES[family]
    return out
