"""Self-play evaluation: held-out persona pairs talk, and frozen judges the run never optimised score each speaker.

``play`` drives ``SelfPlayEnv`` (no rewards, no training) over persona pairs in batches, seeded per batch so that
two models meet the same pairs with the same seeds. ``judge`` turns every judged speaker of every dialogue into
tallies, ``metric → (numerator, denominator)`` summed per persona pair; a pair is the unit the paired bootstrap
of ``rl.evaluation.stats`` resamples (dialogues of one pair are not independent). See DESIGN.md §10.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from data_prep.personas import persona_key, shares_sentence
from models.scoring.text_metrics import (
    COPY_THRESHOLD,
    ECHO_THRESHOLD,
    copies_persona,
    covered_facts,
    is_near_copy,
    ngrams,
    repeated_ngram_fraction,
)
from rl.selfplay import Dialogue, Sampling, SelfPlayEnv


@dataclass
class PlayedDialogue:
    """A self-play transcript, which turns ran out of tokens, and which speakers the evaluated model played."""

    dialogue: Dialogue
    cut_off: list[bool]
    judged: tuple[str, ...]


@dataclass
class JudgeSettings:
    """Thresholds of the lexical judges and the perceivability candidates (see ``models.scoring.text_metrics``)."""

    num_candidates: int = 20  # own persona + distractors
    partner_as_distractor: bool = True  # the partner's persona is one of the distractors (when disjoint)
    copy_threshold: float = COPY_THRESHOLD
    copy_min_words: int = 2
    coverage_threshold: float = 0.5
    echo_threshold: float = ECHO_THRESHOLD
    contradiction_threshold: float = 0.5
    # personas (``persona_key``) seen in training: perceivability is then also tallied over the other speakers only
    seen_personas: frozenset | None = None


@dataclass
class Judges:
    """The frozen judges; only ``persona`` is required."""

    persona: object  # models.scoring.judges.PersonaJudge over the untrained encoder
    lm: object | None = None  # models.scoring.judges.LMJudge
    receiver: object | None = None  # PersonaJudge over the trained Receiver (the RL reward: reported apart)
    nli: object | None = None  # models.scoring.judges.NLIJudge
    lexical: object | None = None  # PersonaJudge over models.scoring.lexical.TfidfPersonaScorer (model-free)
    persona_lm: object | None = None  # models.scoring.judges.LMPersonaJudge (another model family; opt-in)
    settings: JudgeSettings = field(default_factory=JudgeSettings)


@dataclass
class ModelEval:
    """Per-pair tallies of one model: ``tallies[metric] = (num (N,), den (N,))`` over ``units`` (pair ids)."""

    name: str
    units: list[str]
    tallies: dict[str, tuple[torch.Tensor, torch.Tensor]]
    ngrams: dict[int, list[list[tuple[str, ...]]]]  # n → per unit, every word n-gram of its judged utterances
    dialogues: list[PlayedDialogue]
    seconds: dict[str, float] = field(default_factory=dict)


def play(model, pairs: Sequence[dict], formatter, *, dialogues_per_pair: int = 2, exchanges: int = 3,
         sampling: Sampling | None = None, partner=None, partner_sampling: Sampling | None = None,
         response_length: int = 32, seed: int = 0, batch_pairs: int = 8, reuse_kv_cache: bool = True,
         generation_backend: str = "hf", progress: Callable[[int], None] | None = None) -> list[PlayedDialogue]:
    """``dialogues_per_pair`` self-play dialogues of ``exchanges`` A+B exchanges for every pair.

    Batch k of ``batch_pairs`` pairs is generated after ``torch.manual_seed(seed + k)``, so another model given the
    same pairs and seed meets the same pairs in the same batches with the same random stream. With a ``partner``
    it speaks as B and only A is judged.
    """
    out: list[PlayedDialogue] = []
    sampling = sampling or Sampling()
    for k, start in enumerate(range(0, len(pairs), batch_pairs)):
        chunk = list(pairs[start:start + batch_pairs])
        env = SelfPlayEnv(chunk, formatter, None, pairs_per_step=len(chunk), rollouts_per_pair=dialogues_per_pair,
                          sampling_a=sampling, sampling_b=partner_sampling or sampling, response_length=response_length,
                          partner=partner, seed=seed, reuse_kv_cache=reuse_kv_cache, generation_backend=generation_backend)
        torch.manual_seed(seed + k)
        batch = env.rollout(model, 0, exchanges)
        end = formatter.end_token_id
        cut = {(r.info["dialogue_id"], r.info["turn"]): end not in r.response_ids and len(r.response_ids) >= response_length
               for r in batch.rollouts}
        judged = ("A",) if partner is not None else ("A", "B")
        out += [PlayedDialogue(d, [cut[(d.dialogue_id, t)] for t in range(len(d.turns))], judged) for d in batch.dialogues]
        if progress is not None:
            progress(len(chunk))
    return out


class PersonaPool:
    """Distinct personas (by ``data_prep.personas.persona_key``) that distractors are drawn from."""

    def __init__(self, personas: Sequence[Sequence[str]]):
        seen: dict[frozenset, list[str]] = {}
        for p in personas:
            key = persona_key(p)
            if p and key not in seen:
                seen[key] = list(p)
        self.keys, self.personas = list(seen), list(seen.values())


def distractors_for(pair_id: str, speaker: str, own: Sequence[str], partner: Sequence[str],
                    pool: PersonaPool | Sequence[Sequence[str]], settings: JudgeSettings, seed: int = 0) -> list[list[str]]:
    """``num_candidates - 1`` personas from ``pool`` that share no sentence with ``own``, fixed per (pair, speaker, seed).

    With ``partner_as_distractor`` the partner's persona is one of them (when it shares no sentence with ``own``).
    Fewer are returned when the pool has fewer eligible personas.
    """
    pool = pool if isinstance(pool, PersonaPool) else PersonaPool(pool)
    own_key, partner_key = persona_key(own), persona_key(partner)
    first = [list(partner)] if settings.partner_as_distractor and not shares_sentence(own, partner) else []
    eligible = [p for key, p in zip(pool.keys, pool.personas)
                if own_key.isdisjoint(key) and not (first and key == partner_key)]
    rng = random.Random(f"{seed}|{pair_id}|{speaker}")
    k = max(0, min(settings.num_candidates - 1 - len(first), len(eligible)))
    return first + rng.sample(eligible, k)


def _speaker_view(d: Dialogue, speaker: str) -> tuple[list[int], list[str], list[str]]:
    """Indices of the speaker's turns, its persona, and its partner's persona."""
    own, other = (d.persona_a, d.persona_b) if speaker == "A" else (d.persona_b, d.persona_a)
    return [t for t, s in enumerate(d.speakers) if s == speaker], own, other


def judge(name: str, played: Sequence[PlayedDialogue], judges: Judges, distractor_pool: Sequence[Sequence[str]],
          seed: int = 0) -> ModelEval:
    """Tallies of every metric for every judged speaker, summed per persona pair (see the module docstring)."""
    cfg = judges.settings
    pool = distractor_pool if isinstance(distractor_pool, PersonaPool) else PersonaPool(distractor_pool)
    tallies: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    grams: dict[int, dict[str, list]] = {1: defaultdict(list), 2: defaultdict(list)}
    units: list[str] = []
    seconds: dict[str, float] = defaultdict(float)

    def add(pair: str, metric: str, num: float, den: float) -> None:
        tallies[metric][pair][0] += num
        tallies[metric][pair][1] += den

    lm_rows: list[tuple[str, list[str], list[str], str, tuple]] = []  # (pair, persona, history, utterance, chain)
    nli_rows: list[tuple[str, str, list[str], list[str]]] = []  # (pair, utterance, persona premises, history premises)
    for pd in played:
        d = pd.dialogue
        if d.pair_id not in units:
            units.append(d.pair_id)
        for speaker in pd.judged:
            turns, own, other = _speaker_view(d, speaker)
            utts = [d.turns[t] for t in turns]
            distractors = distractors_for(d.pair_id, speaker, own, other, pool, cfg, seed)
            t0 = time.perf_counter()
            unseen = cfg.seen_personas is not None and persona_key(own) not in cfg.seen_personas
            for key, pj in (("perceive", judges.persona), ("lexical", judges.lexical), ("lm_persona", judges.persona_lm),
                            ("receiver", judges.receiver)):
                if pj is not None:
                    hits, rr = pj.rank(utts, own, distractors)
                    add(d.pair_id, f"{key}_hits1", hits, 1)
                    add(d.pair_id, f"{key}_mrr", rr, 1)
                    if key == "perceive" and cfg.seen_personas is not None:  # den 0 where the speaker's was seen
                        add(d.pair_id, "perceive_hits1_unseen", hits if unseen else 0.0, float(unseen))
                        add(d.pair_id, "perceive_mrr_unseen", rr if unseen else 0.0, float(unseen))
            seconds["persona_judges"] += time.perf_counter() - t0
            add(d.pair_id, "num_candidates", 1 + len(distractors), 1)
            add(d.pair_id, "fact_coverage", covered_facts(utts, own, cfg.coverage_threshold), len(own))
            for i, t in enumerate(turns):
                u = d.turns[t]
                earlier_own = [d.turns[j] for j in turns[:i]]
                add(d.pair_id, "copy_rate", copies_persona(u, own, cfg.copy_threshold, cfg.copy_min_words), 1)
                if t > 0:
                    add(d.pair_id, "echo_rate", is_near_copy(u, d.turns[t - 1], cfg.echo_threshold), 1)
                if earlier_own:
                    add(d.pair_id, "self_repeat_rate", any(is_near_copy(u, e, cfg.echo_threshold) for e in earlier_own), 1)
                add(d.pair_id, "intra_repeat", repeated_ngram_fraction(u), 1)
                add(d.pair_id, "mean_words", len(u.split()), 1)
                add(d.pair_id, "empty_rate", not u.strip(), 1)
                add(d.pair_id, "cutoff_rate", pd.cut_off[t], 1)
                for n in grams:
                    grams[n][d.pair_id].extend(ngrams(u, n))
                lm_rows.append((d.pair_id, own, d.turns[:t], u, (d.dialogue_id, speaker)))
                nli_rows.append((d.pair_id, u, list(own), earlier_own))
    if judges.lm is not None and lm_rows:
        t0 = time.perf_counter()
        scored = judges.lm.nll([r[1] for r in lm_rows], [r[2] for r in lm_rows], [r[3] for r in lm_rows],
                               chains=[r[4] for r in lm_rows])
        for (pair, *_), (nll, n) in zip(lm_rows, scored):
            add(pair, "judge_nll", nll, n)
        seconds["lm_judge"] = time.perf_counter() - t0
    if judges.nli is not None and nli_rows:
        t0 = time.perf_counter()
        _nli_tallies(judges.nli, nli_rows, cfg.contradiction_threshold, add)
        seconds["nli_judge"] = time.perf_counter() - t0
    for n, per_pair in grams.items():  # distinct-n within each pair's judged utterances
        for pair, g in per_pair.items():
            add(pair, f"distinct_{n}", len(set(g)), len(g))
    out = {m: (torch.tensor([per[u][0] for u in units], dtype=torch.float64),
               torch.tensor([per[u][1] for u in units], dtype=torch.float64)) for m, per in tallies.items()}
    return ModelEval(name, units, out, {n: [g[u] for u in units] for n, g in grams.items()}, list(played), dict(seconds))


def _nli_tallies(nli, rows, threshold: float, add) -> None:
    """contradiction_persona / contradiction_history: utterances contradicting a persona sentence / an earlier own turn."""
    premises, hypotheses, owner = [], [], []
    for r, (_pair, u, persona, history) in enumerate(rows):
        for kind, texts in (("persona", persona), ("history", history)):
            for p in texts:
                premises.append(p)
                hypotheses.append(u)
                owner.append((r, kind))
    probs = nli.contradiction(premises, hypotheses) if premises else torch.empty(0)
    worst: dict[tuple[int, str], float] = defaultdict(float)
    for (r, kind), p in zip(owner, probs.tolist()):
        worst[(r, kind)] = max(worst[(r, kind)], p)
    for r, (pair, _u, _persona, history) in enumerate(rows):
        add(pair, "contradiction_persona", worst[(r, "persona")] > threshold, 1)
        if history:
            add(pair, "contradiction_history", worst[(r, "history")] > threshold, 1)
