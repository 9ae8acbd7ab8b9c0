"""Batched, left-padded, KV-cached response generation for a Transmitter (or any object with ``.lm``/``.tokenizer``);
``generate_with_cache`` also reuses a speaker's cache from its previous turn (``models.generation.kv_reuse``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch

from models.generation.kv_reuse import RowCache, prefixed_batch, split_rows
from models.networks.transmitter import pad_batch
from models.prompting.prompt import end_of_turn_id


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Tokens that end a reply: the tokenizer's EOS, the ``eos_token_id``(s) of the model's ``generation_config``
    (e.g. Llama-3's several) and the end-of-turn token of the prompt layout (``<|eot_id|>``, ``<end_of_turn>``,
    ``<|im_end|>``, ...: see ``models.prompting.prompt_style``)."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, (list, tuple)) else [configured]
    with contextlib.suppress(ValueError):  # a template p2bot cannot lay out: the formatter was given another style
        ids.append(end_of_turn_id(tokenizer))
    return list(dict.fromkeys(i for i in ids if i is not None))


BACKENDS = ("hf", "static", "continuous")
CB_PAGE_TOKENS = 32  # KV-cache page of the continuous backend; short dialogue turns waste little of a small page


def generate(transmitter, contexts: Sequence[Sequence[int]], *, max_new_tokens: int = 32, do_sample: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, num_beams: int = 1,
             batch_size: int | None = None, eos_token_id: int | list[int] | None = None,
             backend: str = "hf") -> list[list[int]]:
    """Generate one response per context.

    Args:
        transmitter: has ``.lm`` (HF causal LM or PeftModel) and ``.tokenizer``.
        contexts: prompt token ids (e.g. ``PromptFormatter.encode_context``), any lengths.
        max_new_tokens: response length cap.
        do_sample: sample (with temperature / top_k / top_p) instead of greedy or beam search.
        top_k: 0 disables top-k filtering.
        num_beams: beam search width (``do_sample=False``).
        batch_size: contexts per ``generate`` call (``None``: all at once).
        eos_token_id: stop token(s); default ``stop_token_ids`` (EOS, the generation config's, the end of turn).
        backend: ``"hf"`` (a dynamic KV cache), ``"static"`` (a preallocated static KV cache; on CUDA transformers
            then compiles the decoding step with ``torch.compile``) or ``"continuous"`` (transformers' continuous
            batching, ``generate_batch``: a paged KV cache sized to these contexts, finished rows replaced by waiting
            ones, CUDA graphs on a GPU; ``batch_size`` is ignored, no beam search). Greedy outputs are the same.

    Returns:
        Per context, the generated ids up to and including the first stop token (no padding).
    """
    _check_contexts(contexts)
    if backend not in BACKENDS:
        raise ValueError(f"generation backend {backend!r}: expected one of {BACKENDS}")
    if not contexts:
        return []
    tok, lm = transmitter.tokenizer, transmitter.lm
    kw, stops = _generate_kwargs(tok, lm, max_new_tokens, do_sample, temperature, top_k, top_p, num_beams, eos_token_id)
    device = next(lm.parameters()).device
    if backend == "continuous":
        with _eval_mode(lm), torch.no_grad():
            return _cut_at_stop(_generate_continuous(lm, contexts, kw), stops)
    step = batch_size or len(contexts)
    results: list[list[int]] = []
    with _eval_mode(lm), torch.no_grad():
        for start in range(0, len(contexts), step):
            ids, mask = pad_batch(contexts[start:start + step], kw["pad_token_id"], side="left")
            extra = {"cache_implementation": "static"} if backend == "static" else {}
            out = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw, **extra)
            results += _cut_at_stop(out[:, ids.size(1):].tolist(), stops)
    return results


def generate_with_cache(transmitter, contexts: Sequence[Sequence[int]], caches: Sequence[RowCache | None], *,
                        max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                        top_p: float = 1.0, eos_token_id: int | list[int] | None = None
                        ) -> tuple[list[list[int]], list[RowCache | None]]:
    """``generate`` for a batch whose rows may continue an earlier call (``models.generation.kv_reuse``).

    Args:
        contexts: prompt token ids, any lengths.
        caches: per context, the ``RowCache`` this row's speaker left at its previous turn, or None.
        Other arguments as in ``generate`` (one batch, no beam search).

    Returns:
        ``(responses, caches)``: the generated ids (up to and including the first stop token) and, per row, the
        ``RowCache`` of this call (prompt + response) to pass to the speaker's next call; None entries where the
        model's cache cannot be reused.
    """
    _check_contexts(contexts)
    if len(caches) != len(contexts):
        raise ValueError(f"{len(contexts)} contexts but {len(caches)} caches")
    if not contexts:
        return [], []
    tok, lm = transmitter.tokenizer, transmitter.lm
    kw, stops = _generate_kwargs(tok, lm, max_new_tokens, do_sample, temperature, top_k, top_p, 1, eos_token_id)
    device = next(lm.parameters()).device
    ids, mask, cache = prefixed_batch(contexts, caches, kw["pad_token_id"])
    if cache is not None:  # built on the device of the cached tensors, the model's
        kw["cache"] = cache
    with _eval_mode(lm), torch.no_grad():
        out = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device), return_dict_in_generate=True, **kw)
    new = out.sequences[:, ids.size(1):]
    responses = _cut_at_stop(new.tolist(), stops)
    return responses, split_rows(getattr(out, "cache", None), ids, mask, responses, new.size(1))


def _generate_continuous(lm, contexts: Sequence[Sequence[int]], kw: dict) -> list[list[int]]:
    """transformers' ``generate_batch`` with a paged cache sized to the request (not to the free memory, which
    during RL belongs to training); sampling seeded from torch's generator, so a seeded run repeats."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    if kw["num_beams"] > 1:
        raise ValueError("the continuous generation backend does not do beam search (num_beams > 1): use hf")
    gen = GenerationConfig(**{k: kw[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p",
                                                 "eos_token_id", "pad_token_id") if kw.get(k) is not None})
    pages = sum(math.ceil((len(c) + kw["max_new_tokens"]) / CB_PAGE_TOKENS) for c in contexts)
    cb = ContinuousBatchingConfig(page_size=CB_PAGE_TOKENS, num_blocks=pages + len(contexts),
                                  max_batch_tokens=max(256, min(8192, sum(len(c) for c in contexts))),
                                  seed=int(torch.randint(0, 2**31 - 1, ())))
    # no warm-up: it would capture CUDA graphs at the largest sizes on every call (one call per dialogue turn)
    out = lm.generate_batch([list(c) for c in contexts], generation_config=gen, continuous_batching_config=cb,
                            warmup=False)
    failed = [r.error for r in out.values() if r.error is not None]
    if len(out) != len(contexts) or failed:
        raise RuntimeError(f"continuous batching returned {len(out)} of {len(contexts)} responses"
                           + (f"; first error: {failed[0]}" if failed else ""))
    return [list(r.generated_tokens) for r in out.values()]  # in the order of the inputs


def _check_contexts(contexts: Sequence[Sequence[int]]) -> None:
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token")


def _generate_kwargs(tok, lm, max_new_tokens, do_sample, temperature, top_k, top_p, num_beams, eos_token_id):
    """HF ``generate`` keyword arguments and the stop ids (default ``stop_token_ids``)."""
    stops = stop_token_ids(tok, getattr(lm, "generation_config", None)) if eos_token_id is None else eos_token_id
    stops = [stops] if isinstance(stops, int) else list(stops)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams, use_cache=True,
              pad_token_id=pad, eos_token_id=stops)
    if do_sample:
        kw.update(temperature=temperature, top_k=top_k or None, top_p=top_p)
    else:  # silence the model's generation_config sampling defaults
        kw.update(temperature=None, top_k=None, top_p=None)
    return kw, stops


def _cut_at_stop(rows: list[list[int]], stops: list[int]) -> list[list[int]]:
    """Each row up to and including its first stop token (the padding after it dropped)."""
    out = []
    for row in rows:
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        out.append(row if cut is None else row[: cut + 1])
    return out


@contextlib.contextmanager
def _eval_mode(module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
