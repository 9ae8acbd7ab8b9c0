"""Turn dialogues into the ``datasets.Dataset`` each training stage consumes.

Every builder is deterministic for a given seed and is cached on disk, keyed by a hash of the input
dialogues and the builder's arguments (``cache_dir=None`` disables the cache).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from datasets import Dataset, load_from_disk

from data_prep.files.atomic import fsync_tree
from data_prep.personas import persona_key, shares_sentence
from data_prep.schema import PersonaDialogue, other

CACHE_VERSION = "3"


def default_cache_dir() -> Path:
    root = os.environ.get("P2BOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "p2bot")
    return Path(root) / "datasets"


def _fingerprint(name: str, dialogues: Sequence[PersonaDialogue], params: dict) -> str:
    h = hashlib.sha256(f"{name}:{CACHE_VERSION}:{json.dumps(params, sort_keys=True)}".encode())
    for d in dialogues:
        h.update(json.dumps(d.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:24]


def _cached(name: str, dialogues, params: dict, cache_dir, build: Callable[[], list[dict]]) -> Dataset:
    if cache_dir is None:
        return Dataset.from_list(build())
    path = Path(cache_dir) / f"{name}-{_fingerprint(name, dialogues, params)}"
    if path.exists():
        return load_from_disk(str(path))
    ds = Dataset.from_list(build())
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.save_to_disk(str(tmp))
    fsync_tree(tmp)
    try:
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        # another process wrote the same entry first: the rename onto its (non-empty) directory fails
        if not (err.errno in (errno.ENOTEMPTY, errno.EEXIST) and path.is_dir()):
            raise
    return load_from_disk(str(path))


def _utterance_pool(dialogues: Sequence[PersonaDialogue]) -> list[tuple[int, str]]:
    return [(i, t) for i, d in enumerate(dialogues) for t in d.turns]


def _sample_other(rng: random.Random, pool: list, k: int, exclude_dialogue: int, exclude: set,
                  reject: Callable[[object], bool] | None = None, key: Callable[[object], object] = str) -> list:
    """Draw k items of distinct ``key`` from ``pool`` (``(dialogue_index, item)`` pairs) not from
    ``exclude_dialogue``, whose key is not in ``exclude`` and, with ``reject``, not rejected by it."""
    out: list = []
    seen = set(exclude)
    if not pool:
        return out
    for _ in range(50 * max(k, 1)):
        if len(out) == k:
            break
        di, item = pool[rng.randrange(len(pool))]
        item_key = key(item)
        if di == exclude_dialogue or item_key in seen or (reject is not None and reject(item)):
            continue
        seen.add(item_key)
        out.append(item)
    if len(out) < k:
        raise ValueError(f"could not draw {k} distinct distractors from other dialogues (only {len(out)} found)")
    return out


def build_transmitter_examples(
    dialogues: Sequence[PersonaDialogue],
    num_distractors: int = 1,
    seed: int = 0,
    require_persona: bool = True,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """One row per turn: the speaker's persona and the history before it → the response.

    Columns: ``dialogue_id``, ``turn_index``, ``speaker``, ``persona`` (list[str]), ``partner_persona``,
    ``history`` (list[str], oldest first; the last entry is the partner's), ``response``,
    ``distractors`` (list[str]: the turn's own candidates when it has them, else responses of other
    dialogues). Turns of a speaker with no persona are skipped unless ``require_persona=False``.
    """
    params = dict(num_distractors=num_distractors, seed=seed, require_persona=require_persona)

    def build() -> list[dict]:
        rng = random.Random(seed)
        pool = _utterance_pool(dialogues)
        rows = []
        for di, d in enumerate(dialogues):
            for t, response in enumerate(d.turns):
                spk = d.speaker(t)
                persona = d.persona(spk)
                if require_persona and not persona:
                    continue
                cands = [c for c in (d.turn_candidates(t) or []) if c != response]
                if len(cands) >= num_distractors:
                    distractors = rng.sample(cands, num_distractors)
                else:
                    distractors = cands + _sample_other(rng, pool, num_distractors - len(cands), di, {response, *cands})
                rows.append(
                    dict(
                        dialogue_id=d.dialogue_id, turn_index=t, speaker=spk, persona=list(persona),
                        partner_persona=list(d.persona(other(spk))), history=list(d.turns[:t]),
                        response=response, distractors=distractors,
                    )
                )
        return rows

    return _cached("transmitter", dialogues, params, cache_dir, build)


def build_receiver_examples(
    dialogues: Sequence[PersonaDialogue],
    num_negatives: int = 1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    distractor_dialogues: Sequence[PersonaDialogue] = (),
) -> Dataset:
    """Weak supervision for the Receiver: an utterance should match its speaker's persona.

    Columns: ``dialogue_id``, ``turn_index``, ``utterance``, ``persona`` (the speaker's own sentences),
    ``negative_personas`` (list of ``num_negatives`` persona sentence lists from other dialogues).
    Use 1 negative for training and 19–31 for validation. A negative shares no sentence with the own persona
    (``data_prep.personas.shares_sentence``; data sets such as Synthetic-Persona-Chat draw persona sentences from a small pool, and a persona holding the
    sentence an utterance reveals is not a negative for it). ``distractor_dialogues`` (e.g. the training
    dialogues, for a small validation set) add their personas to the negatives' pool; their turns give no rows.
    """
    params = dict(num_negatives=num_negatives, seed=seed)
    if distractor_dialogues:
        params["distractors"] = _fingerprint("distractors", distractor_dialogues, {})

    def build() -> list[dict]:
        rng = random.Random(seed)
        pool = [(i, p) for i, d in enumerate(dialogues) for p in (d.persona_a, d.persona_b) if p]
        pool += [(-1 - j, p) for j, d in enumerate(distractor_dialogues) for p in (d.persona_a, d.persona_b) if p]
        rows = []
        for di, d in enumerate(dialogues):
            for t, utterance in enumerate(d.turns):
                persona = d.persona(d.speaker(t))
                if not persona:
                    continue
                negs = _sample_other(rng, pool, num_negatives, di, set(), key=persona_key,
                                     reject=lambda p, own=persona: shares_sentence(own, p))
                rows.append(
                    dict(dialogue_id=d.dialogue_id, turn_index=t, utterance=utterance, persona=list(persona),
                         negative_personas=[list(n) for n in negs])
                )
        return rows

    return _cached("receiver", dialogues, params, cache_dir, build)


def build_selfplay_pairs(
    dialogues: Sequence[PersonaDialogue],
    with_first_utterance: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Persona pairs to seed self-play: ``pair_id``, ``persona_a``, ``persona_b``, ``first_utterance``.

    Dialogues where either persona is unknown are skipped. The order is shuffled with ``seed``; the
    first utterance (the real opening line, spoken by A) is kept only if ``with_first_utterance``.
    """
    params = dict(with_first_utterance=with_first_utterance, seed=seed)

    def build() -> list[dict]:
        rows = []
        for d in dialogues:
            if not d.persona_a or not d.persona_b:
                continue
            a, b = (d.persona_a, d.persona_b) if d.first_speaker == "A" else (d.persona_b, d.persona_a)
            first = d.turns[0] if with_first_utterance else ""
            rows.append(dict(pair_id=d.dialogue_id, persona_a=list(a), persona_b=list(b), first_utterance=first))
        random.Random(seed).shuffle(rows)
        return rows

    return _cached("selfplay", dialogues, params, cache_dir, build)
