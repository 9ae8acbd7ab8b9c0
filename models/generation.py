"""Batched, left-padded, KV-cached response generation for a Transmitter (or any object with ``.lm``/``.tokenizer``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.transmitter import pad_batch


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus ChatML's ``<|im_end|>`` when the tokenizer has it (the prompt format ends responses with it)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    im_end = tokenizer.get_vocab().get("<|im_end|>")
    if im_end is not None and im_end not in ids:
        ids.append(im_end)
    return ids


def generate(transmitter, contexts: Sequence[Sequence[int]], *, max_new_tokens: int = 32, do_sample: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, num_beams: int = 1,
             batch_size: int | None = None, eos_token_id: int | list[int] | None = None) -> list[list[int]]:
    """Generate one response per context.

    Args:
        transmitter: has ``.lm`` (HF causal LM or PeftModel) and ``.tokenizer``.
        contexts: prompt token ids (e.g. ``PromptFormatter.encode_context``), any lengths.
        max_new_tokens: response length cap.
        do_sample: sample (with temperature / top_k / top_p) instead of greedy or beam search.
        top_k: 0 disables top-k filtering.
        num_beams: beam search width (``do_sample=False``).
        batch_size: contexts per ``generate`` call (``None``: all at once).
        eos_token_id: stop token(s); default EOS and ``<|im_end|>``.

    Returns:
        Per context, the generated ids up to and including the first stop token (no padding).
    """
    if not contexts:
        return []
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token")
    tok, lm = transmitter.tokenizer, transmitter.lm
    stops = stop_token_ids(tok) if eos_token_id is None else eos_token_id
    stops = [stops] if isinstance(stops, int) else list(stops)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams, use_cache=True,
              pad_token_id=pad, eos_token_id=stops)
    if do_sample:
        kw.update(temperature=temperature, top_k=top_k or None, top_p=top_p)
    else:  # silence the model's generation_config sampling defaults
        kw.update(temperature=None, top_k=None, top_p=None)
    device = next(lm.parameters()).device
    step = batch_size or len(contexts)
    results: list[list[int]] = []
    was_training = lm.training
    lm.eval()
    try:
        for start in range(0, len(contexts), step):
            chunk = contexts[start:start + step]
            ids, mask = pad_batch(chunk, pad, side="left")
            with torch.no_grad():
                out = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
            for row in out[:, ids.size(1):].tolist():
                cut = next((i for i, t in enumerate(row) if t in stops), None)
                results.append(row if cut is None else row[: cut + 1])
    finally:
        lm.train(was_training)
    return results
