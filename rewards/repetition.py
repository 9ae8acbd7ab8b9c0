"""``repetition``: how closely an utterance repeats an earlier one of its dialogue (use with a negative weight)."""

from __future__ import annotations

import torch

from rewards.base import ReceiverReward, as_texts, column, dialogue_groups
from rewards.registry import register_reward


@register_reward("repetition", weight=-0.1)
class RepetitionReward(ReceiverReward):
    """r_t = max_{j < t} cos(e(u_t), e(u_j)) over the earlier utterances u_j of the same dialogue; 0 if none.

    e is the Receiver's normalised mean-pooled embedding. The earlier utterances are the kwarg ``history``
    (both speakers' turns); without it, the batch's earlier turns of the same ``dialogue_id``.

    Args:
        receiver: anything with ``embed(texts) -> (N, D)`` L2-normalised (default: ``pool.receiver()``).
        pool: a ``ScorerPool``.
        same_speaker_only: compare only with the speaker's own earlier utterances (every second one back).
    """

    name = "repetition"

    def __init__(self, receiver=None, *, pool=None, same_speaker_only: bool = False):
        if receiver is None and pool is None:
            raise ValueError("RepetitionReward needs a receiver or a pool")
        self._receiver, self.pool, self.same_speaker_only = receiver, pool, same_speaker_only

    def _earlier(self, texts: list[str], kwargs: dict) -> list[list[str]]:
        n = len(texts)
        histories = column(kwargs, "history", n)
        if histories is not None:
            earlier = [[str(h) for h in hist] for hist in histories]
        else:
            earlier = [[] for _ in range(n)]
            for idx in dialogue_groups(n, column(kwargs, "dialogue_id", n), column(kwargs, "turn", n)):
                for pos, i in enumerate(idx):
                    earlier[i] = [texts[j] for j in idx[:pos]]
        if self.same_speaker_only:  # the speaker's own turns are 2, 4, ... back
            earlier = [h[::-1][1::2][::-1] for h in earlier]
        return earlier

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = as_texts(completions)
        earlier = self._earlier(texts, kwargs)
        distinct = list(dict.fromkeys(texts + [h for hist in earlier for h in hist]))
        if not distinct:
            return [0.0] * len(texts)
        index = {t: i for i, t in enumerate(distinct)}
        emb = self.receiver.embed(distinct).float().cpu()  # (U, D), unit norm
        out = []
        for text, hist in zip(texts, earlier):
            if not hist:
                out.append(0.0)
                continue
            u = emb[index[text]]  # (D,)
            h = emb[torch.tensor([index[x] for x in hist])]  # (H, D)
            out.append(float((h @ u).max()))
        return out
