"""``persona``: how strongly the utterance reveals its speaker's persona, by the Receiver; optionally mutual."""

from __future__ import annotations

import torch

from data_prep.personas import persona_key, shares_sentence
from rewards.base import ReceiverReward, as_texts, batch_normalize, column, dialogue_groups
from rewards.registry import register_reward


def discounted_future(scores: list[float], turns: list[int], gamma: float) -> list[float]:
    """r_t = Σ_{j: turn_j ≥ turn_t} γ^(turn_j − turn_t) · p_j for one dialogue (``turns`` ascending).

    With consecutive turns this is the backward recursion r_t = p_t + γ · r_{t+1}, r_T = p_T.
    """
    out = [0.0] * len(scores)
    for t in range(len(scores)):
        out[t] = sum(gamma ** (turns[j] - turns[t]) * scores[j] for j in range(t, len(scores)))
    return out


@register_reward("persona", weight=0.5)
class PersonaReward(ReceiverReward):
    """Receiver score of each utterance against its speaker's own persona (kwarg ``persona``).

    p_t = Σ_j softmax_j(s)·s_j with s_j = u_t·persona_j/τ (``Receiver.score``).

    Mutual variant (``mutual=True``, the dialogue-level "mutual persona perception" reward): the utterances
    u_1..u_T of one dialogue (grouped by kwarg ``dialogue_id``, ordered by ``turn``) alternate between the
    speakers, and each p_t is scored against the persona of u_t's own speaker. Scores are then discounted
    backwards over the interleaved sequence:

        r_t = Σ_{k ≥ 0} γ^k · p_{t+k}        (equivalently r_t = p_t + γ · r_{t+1}, r_T = p_T)

    so u_t is credited with γ·p_{t+1} for the persona its partner reveals in reply, γ²·p_{t+2} for what its
    own speaker says next, and so on; k is the turn difference, so a missing turn is discounted over. Only
    utterances present in the batch count (a first line taken from data is not a sample and is skipped).
    Without ``dialogue_id`` every sample is its own dialogue and r_t = p_t.

    Contrastive variant (``contrastive=True``): p_t = log softmax of the own persona's score among the own persona
    and the other personas of the batch (kwargs ``persona`` and ``partner_persona`` of every sample) that share no
    sentence with it (``data_prep.personas.shares_sentence``), the partner's included: p_t = s(u_t, own) − log Σ_{P ∈ own ∪ others} exp s(u_t, P) ≤ 0. It
    pays for being told apart from the partner and from other speakers, and saturates once the utterance is,
    so copying a persona sentence word for word earns no more than naming the fact.

    Args:
        receiver: anything with ``score(utterances, personas).scores`` (default: ``pool.receiver()``).
        pool: a ``ScorerPool``.
        mutual: use the discounted dialogue-level reward.
        gamma: the discount γ of the mutual reward (seed 0.5).
        normalize: whiten the values over the batch (mean 0, std 1).
        contrastive: score against the batch's other personas (see above).
    """

    name = "persona"

    def __init__(self, receiver=None, *, pool=None, mutual: bool = False, gamma: float = 0.5, normalize: bool = False,
                 contrastive: bool = False):
        if receiver is None and pool is None:
            raise ValueError("PersonaReward needs a receiver or a pool")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: must lie in [0, 1]")
        self._receiver, self.pool = receiver, pool
        self.mutual, self.gamma, self.normalize, self.contrastive = mutual, float(gamma), normalize, contrastive
        self.needs_dialogue = mutual

    def own_scores(self, completions, personas) -> list[float]:
        """p_i: the Receiver score of each completion against its own persona."""
        return [float(s) for s in self.receiver.score(as_texts(completions), personas).scores]

    def contrastive_scores(self, completions, personas, others) -> list[float]:
        """p_i = s(u_i, own_i) − logsumexp_P s(u_i, P) over own_i and the personas of ``others`` disjoint from it."""
        texts = as_texts(completions)
        distinct: dict[frozenset, list[str]] = {}  # one candidate per persona (``persona_key``), the first seen
        for p in others:
            if p:
                distinct.setdefault(persona_key(p), list(p))
        utts, cands, sizes = [], [], []
        for text, own in zip(texts, personas):
            rivals = [p for p in distinct.values() if not shares_sentence(own, p)]
            for p in [list(own), *rivals]:
                utts.append(text)
                cands.append(p)
            sizes.append(1 + len(rivals))
        scores = torch.as_tensor(self.receiver.score(utts, cands).scores).float()
        out, start = [], 0
        for k in sizes:
            row = scores[start:start + k]
            out.append(float(row[0] - torch.logsumexp(row, 0)))
            start += k
        return out

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        n = len(completions)
        personas = column(kwargs, "persona", n)
        if personas is None:
            raise ValueError("the persona reward needs the kwarg 'persona' (the speaker's persona sentences)")
        if self.contrastive:
            partners = column(kwargs, "partner_persona", n) or []
            scores = self.contrastive_scores(completions, personas, [*personas, *partners])
        else:
            scores = self.own_scores(completions, personas)
        if self.mutual:
            turns = column(kwargs, "turn", n)
            out = [0.0] * n
            for idx in dialogue_groups(n, column(kwargs, "dialogue_id", n), turns):
                order = [turns[i] for i in idx] if turns is not None else list(range(len(idx)))
                for i, r in zip(idx, discounted_future([scores[i] for i in idx], order, self.gamma)):
                    out[i] = r
            scores = out
        return batch_normalize(scores) if self.normalize else scores
