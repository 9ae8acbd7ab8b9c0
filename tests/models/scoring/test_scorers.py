"""LMScorer calls the model the one way its forward supports, decided up front; the model's own errors propagate."""

import pytest
import torch
from torch import nn

from models.scoring.scorers import LMScorer
from tests.models.transmitter_fixtures import smollm2_tokenizer, tiny_lm

SEQS = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
SPANS = [[(1, 3), (4, 6)], [(2, 3)]]


class NoLogitsToKeep(nn.Module):
    """A real tiny Llama behind a forward that names no ``logits_to_keep`` (as some HF causal LMs do)."""

    def __init__(self, lm):
        super().__init__()
        self.inner = lm

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def _count_forwards(model) -> list[dict]:
    calls = []
    model.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs), with_kwargs=True)
    return calls


def _direct(lm, seq, a, b):
    with torch.no_grad():
        logp = lm(input_ids=torch.tensor([seq])).logits[0].log_softmax(-1)
    return [logp[k - 1, seq[k]].item() for k in range(a, b)]


def test_a_model_that_slices_its_logits_is_called_once_per_batch_with_logits_to_keep():
    tok = smollm2_tokenizer()
    lm = tiny_lm(tok, seed=3)
    calls = _count_forwards(lm)
    got = LMScorer(lm, tok).span_logprobs(SEQS, SPANS)
    assert len(calls) == 1 and "logits_to_keep" in calls[0]
    for seq, sp, lps in zip(SEQS, SPANS, got):
        for (a, b), lp in zip(sp, lps):
            assert lp.tolist() == pytest.approx(_direct(lm, seq, a, b), abs=1e-4)


def test_a_model_without_logits_to_keep_is_scored_from_its_full_logits_in_one_call():
    tok = smollm2_tokenizer()
    lm = tiny_lm(tok, seed=3)
    wrapped = NoLogitsToKeep(lm).eval()
    calls = _count_forwards(wrapped)
    scorer = LMScorer(wrapped, tok)
    assert not scorer.keeps_logits
    got = scorer.span_logprobs(SEQS, SPANS)
    assert len(calls) == 1 and "logits_to_keep" not in calls[0]
    for seq, sp, lps in zip(SEQS, SPANS, got):
        for (a, b), lp in zip(sp, lps):
            assert lp.tolist() == pytest.approx(_direct(lm, seq, a, b), abs=1e-4)


def test_a_type_error_raised_inside_the_model_propagates_instead_of_a_second_call():
    tok = smollm2_tokenizer()
    lm = tiny_lm(tok, seed=3)
    raised = []

    def fail_once(module, args):
        if not raised:
            raised.append(True)
            raise TypeError("bad input inside the first decoder layer")

    lm.model.layers[0].register_forward_pre_hook(fail_once)
    calls = _count_forwards(lm)
    with pytest.raises(TypeError, match="inside the first decoder layer"):
        LMScorer(lm, tok).span_logprobs(SEQS, SPANS)
    assert len(calls) == 1


def test_a_model_without_position_ids_is_refused_by_name():
    class NoPositions(nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.inner = lm

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    tok = smollm2_tokenizer()
    with pytest.raises(ValueError, match="NoPositions.forward takes no position_ids"):
        LMScorer(NoPositions(tiny_lm(tok)), tok).span_logprobs(SEQS, SPANS)
