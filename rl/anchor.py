"""The persona anchor: rows that let the update see how likely the policy finds its own persona sentences.

A policy pushed on a persona reward learns to restate its persona sentences; the copy metric then rises above the
SFT start's. The anchor measures that tendency directly, without waiting for a sampled copy: for each persona in a
step, one of its trained contexts is followed by each of its persona sentences as the response, and
``rl.losses.anchor_loss`` penalises any rise of such a sentence's log-probability above the reference policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rl.experience import Rollout


def persona_anchor_rollouts(rollouts: Sequence[Rollout], encode_sentence: Callable[[str], list[int]],
                            step: int = 0) -> list[Rollout]:
    """One anchor row per (persona, persona sentence) of the trained, scored self-play ``rollouts``.

    The context is one of that persona's trained turns, taken in turn by ``step`` (so that, over steps, openers
    and replies deep in a dialogue are both anchored without multiplying the rows); ``encode_sentence`` turns a
    sentence into response tokens (``PromptFormatter.encode_response`` without its end marker: a copy followed by
    more text counts as well). Rollouts without ``info['persona']`` (not self-play) give no rows.
    """
    contexts: dict[tuple[str, ...], list[Rollout]] = {}
    for r in rollouts:
        persona = r.info.get("persona")
        if r.trainable and r.score is not None and persona:
            contexts.setdefault(tuple(persona), []).append(r)
    anchors = []
    for persona, rs in contexts.items():
        ctx = rs[step % len(rs)]
        for sentence in persona:
            ids = encode_sentence(sentence)
            if ids:
                anchors.append(Rollout(query_ids=list(ctx.query_ids), response_ids=ids, score=0.0,
                                       info={"persona_sentence": sentence}, temperature=ctx.temperature))
    return anchors
