"""Episode layouts: how rollouts become the rows of an ``Experience`` (``episode_layout`` in ``PPOConfig``).

``turn``: one row per rollout (``rl.experience.collate``); each turn re-encodes its whole context.

``speaker``: one row per speaker of each dialogue: its persona, then the transcript from its side, ending with its
last response. Its own turns' responses are the trained tokens (the partner's turns are context only), each own
turn's score sits at that turn's last token, and one forward pass serves every turn. A speaker's turns chain into
one row while each turn's prompt + response is a prefix of the next one's prompt (the history was not cut from the
left and the response re-tokenises to the same ids); where it is not, a new row starts, so every trained token has
exactly the context it was sampled in and the layout gives the same log-probs and values as ``turn``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch

from rl.experience import Experience, Rollout, collate


@dataclass
class Episode:
    """One speaker's chain of turns as one sequence; ``spans[k]`` = [start, end) of own response k in ``ids``."""

    ids: list[int]
    spans: list[tuple[int, int]] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)


def _speaker_key(r: Rollout, i: int) -> Hashable:
    d, s = r.info.get("dialogue_id"), r.info.get("speaker")
    return (d, s) if d is not None and s is not None else ("#row", i)  # no dialogue info: a row of its own


def speaker_episodes(rollouts: Sequence[Rollout]) -> list[Episode]:
    """Chain each speaker's rollouts (in turn order) into episodes (see the module docstring)."""
    by_speaker: dict[Hashable, list[Rollout]] = defaultdict(list)
    for i, r in enumerate(rollouts):
        by_speaker[_speaker_key(r, i)].append(r)
    episodes = []
    for turns in by_speaker.values():
        current: Episode | None = None
        for r in sorted(turns, key=lambda r: r.info.get("turn", 0)):
            seq = list(r.query_ids) + list(r.response_ids)
            chains = (current is not None and seq[: len(current.ids)] == current.ids
                      and r.temperature == current.rollouts[-1].temperature)
            if not chains:
                current = Episode([])
                episodes.append(current)
            current.spans.append((len(r.query_ids), len(seq)))
            current.ids = seq
            current.rollouts.append(r)
    return episodes


def collate_episodes(episodes: Sequence[Episode], pad_token_id: int, device: torch.device | str = "cpu") -> Experience:
    """Left-pad episodes to (B, L) and gather their own response tokens into (B, R) rows (turn by turn)."""
    B = len(episodes)
    L = max(len(e.ids) for e in episodes)
    R = max(1, max(sum(e - s for s, e in ep.spans) for ep in episodes))
    K = max(len(ep.spans) for ep in episodes)
    input_ids = torch.full((B, L), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((B, L), dtype=torch.long)
    response_ids = torch.full((B, R), pad_token_id, dtype=torch.long)
    response_index = torch.zeros((B, R), dtype=torch.long)
    response_mask = torch.zeros((B, R))
    turn_ids = torch.full((B, R), -1, dtype=torch.long)
    turn_scores = torch.zeros((B, K))
    turn_mask = torch.zeros((B, K))
    for b, ep in enumerate(episodes):
        offset = L - len(ep.ids)
        if ep.spans[0][0] == 0:
            raise ValueError("episode with an empty first query (the first response token needs a prompt)")
        input_ids[b, offset:] = torch.tensor(ep.ids, dtype=torch.long)
        attention_mask[b, offset:] = 1
        j = 0
        for k, ((start, end), r) in enumerate(zip(ep.spans, ep.rollouts)):
            n = end - start
            response_ids[b, j:j + n] = torch.tensor(ep.ids[start:end], dtype=torch.long)
            response_index[b, j:j + n] = offset + torch.arange(start, end) - 1
            scored = r.score is not None  # a turn scored None keeps its place but gets no weight
            response_mask[b, j:j + n] = float(scored)
            turn_ids[b, j:j + n] = k
            turn_scores[b, k] = float(r.score) if scored else 0.0
            turn_mask[b, k] = float(scored)
            j += n
    exp = Experience(input_ids, attention_mask, response_index, response_ids, response_mask, turn_ids, turn_scores,
                     turn_mask, torch.tensor([float(ep.rollouts[0].temperature) for ep in episodes]))
    return exp.to(device)


@dataclass
class Layout:
    """An episode layout: the rows' rollouts (for group baselines) and their ``Experience``."""

    rows: list[list[Rollout]]
    experience: Experience


def _turn_layout(rollouts: Sequence[Rollout], pad_token_id: int, device) -> Layout:
    return Layout([[r] for r in rollouts], collate(list(rollouts), pad_token_id, device))


def _speaker_layout(rollouts: Sequence[Rollout], pad_token_id: int, device) -> Layout:
    episodes = speaker_episodes(rollouts)
    return Layout([ep.rollouts for ep in episodes], collate_episodes(episodes, pad_token_id, device))


LAYOUTS: dict[str, Callable[..., Layout]] = {"turn": _turn_layout, "speaker": _speaker_layout}
