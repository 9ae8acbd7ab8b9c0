"""The copy guard: the tokens that would complete a copy of a persona sentence, at each position of a response.

A policy pushed on a persona reward names more persona facts, and some of those mentions reproduce enough of a
persona sentence's content words to count as a copy (``models.scoring.text_metrics.copies_persona``: ≥ 80% of them). A copy
penalty on the reward only learns from the copies the policy happens to sample (a few per step). The guard instead
looks at every position where the response so far is one content word short of a copy, and names the tokens that
would start each missing word; ``CopyGuardLoss``, an ``AuxLoss`` of the update, then lowers their probability there
(``rl.losses.copy_unlikelihood_loss``: unlikelihood training, Welleck et al. 2020). A response that names a fact in other words, or names part of a long
sentence, is never one word short, and keeps its probability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from models.scoring.lexical import content_words
from models.scoring.text_metrics import COPY_THRESHOLD
from rl.experience import Experience, Rollout
from rl.forward import PolicyOutput
from rl.guards.base import AuxLoss
from rl.losses import copy_unlikelihood_loss


def words_to_copy(sentence_words: set[str], threshold: float) -> int:
    """How many of a sentence's content words an utterance must hold to count as a copy (``recall ≥ threshold``)."""
    return max(1, math.ceil(threshold * len(sentence_words) - 1e-9))


def missing_copy_words(said: set[str], persona: Sequence[str], threshold: float = COPY_THRESHOLD,
                       min_words: int = 2) -> set[str]:
    """Content words that, said next, would make an utterance holding ``said`` a copy of one persona sentence.

    Empty when no sentence (of ≥ ``min_words`` content words) is exactly one word short, or when it is already
    copied (the copy happened: nothing is left to guard).
    """
    return _missing(said, [content_words(s) for s in persona], threshold, min_words)


def _missing(said: set[str], sentences: Sequence[set[str]], threshold: float, min_words: int) -> set[str]:
    """``missing_copy_words`` over the persona sentences' content-word sets."""
    out: set[str] = set()
    if any(len(s) >= min_words and len(said & s) >= words_to_copy(s, threshold) for s in sentences):
        return out
    for s in sentences:
        if len(s) >= min_words and len(said & s) == words_to_copy(s, threshold) - 1:
            out |= s - said
    return out


def word_start_tokens(word: str, encode: Callable[[str], list[int]]) -> set[int]:
    """The first token of each way ``word`` (a ``content_words`` form, plural "s" stripped) may be written: lower
    and capitalised, after a space and not, singular and plural."""
    forms = {word, word.capitalize()}
    if len(word) >= 3 and not word.endswith("s"):
        forms |= {f + "s" for f in forms}
    ids = set()
    for form in forms:
        for text in (form, " " + form):
            tokens = encode(text)
            if tokens:
                ids.add(tokens[0])
    return ids


class CopyGuard:
    """Per-token candidate sets for ``response_ids``: ``candidates(response_ids, persona)[t]`` is the set of token ids
    that, at position t, would start a word completing a copy of a persona sentence (empty where none would).

    Args:
        tokenizer: the policy's tokenizer (decodes the response prefix, encodes candidate words).
        threshold: the copy rule's share of a sentence's content words (the evaluation's ``COPY_THRESHOLD``).
        min_words: sentences with fewer content words are not guarded (the evaluation ignores them too).
    """

    def __init__(self, tokenizer, threshold: float = COPY_THRESHOLD, min_words: int = 2):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"copy guard threshold={threshold}: must lie in (0, 1]")
        self.tokenizer, self.threshold, self.min_words = tokenizer, float(threshold), int(min_words)
        self._starts: dict[str, set[int]] = {}

    def _word_starts(self, word: str) -> set[int]:
        if word not in self._starts:
            self._starts[word] = word_start_tokens(word, lambda t: self.tokenizer.encode(t, add_special_tokens=False))
        return self._starts[word]

    def candidates(self, response_ids: Sequence[int], persona: Sequence[str]) -> list[set[int]]:
        out = []
        sentences = [content_words(s) for s in persona]  # once per response, not once per position
        for t in range(len(response_ids)):
            said = content_words(self.tokenizer.decode(list(response_ids[:t]), skip_special_tokens=True))
            ids: set[int] = set()
            for word in _missing(said, sentences, self.threshold, self.min_words):
                ids |= self._word_starts(word)
            out.append(ids)
        return out


def candidate_tensor(guard: CopyGuard, rows: list[list[Rollout]], width: int) -> torch.Tensor:
    """(B, width, M) the guard's token ids at each trained token of each row (-1 pads; M ≥ 1); a row's own turns lie
    end to end in the response columns, as both episode layouts put them. Rollouts without a persona, or scored
    None, get none."""
    per_row = []
    for row in rows:
        sets: list[set[int]] = []
        for r in row:
            persona = r.info.get("persona")
            if r.score is not None and persona:
                sets.extend(guard.candidates(r.response_ids, persona))
            else:
                sets.extend(set() for _ in r.response_ids)
        per_row.append(sets)
    m = max([1] + [len(c) for sets in per_row for c in sets])
    out = torch.full((len(rows), width, m), -1, dtype=torch.long)
    for b, sets in enumerate(per_row):
        for t, c in enumerate(sets[:width]):
            out[b, t, :len(c)] = torch.tensor(sorted(c), dtype=torch.long)
    return out


class CopyGuardLoss(AuxLoss):
    """The copy guard as a term of the update: ``coef`` times the unlikelihood of the ``CopyGuard`` candidates of
    each trained token, from the rollouts' ``info['persona']``.

    Args:
        tokenizer: the policy's tokenizer.
        coef: the term's weight (``PPOConfig.copy_guard_coef``).
        threshold: the copy rule (``PPOConfig.copy_guard_threshold``).
    """

    name = "copy_guard"
    needs_logits = True

    def __init__(self, tokenizer, coef: float, threshold: float = COPY_THRESHOLD):
        self.coef = float(coef)
        self.guard = CopyGuard(tokenizer, threshold)

    def prepare(self, exp: Experience, rows: list[list[Rollout]]) -> None:
        width = exp.response_ids.shape[1]
        exp.aux[self.name] = candidate_tensor(self.guard, rows, width).to(exp.input_ids.device)  # (B, R, M)

    def loss(self, out: PolicyOutput, mb: Experience) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.name not in mb.aux:
            raise ValueError("the copy guard's candidates are missing from the experience: build it with "
                             "PPOTrainer.make_experience, which prepares every auxiliary loss")
        return copy_unlikelihood_loss(out.logits, mb.aux[self.name], mb.response_mask)
