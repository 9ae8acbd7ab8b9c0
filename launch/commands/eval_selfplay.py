"""``p2bot eval --selfplay``: self-play on held-out persona pairs, scored by frozen judges, optionally against a second model.

Wires data, models and judges together and writes ``selfplay_results.json``, ``selfplay_table.md`` and
``selfplay_samples.md`` to ``output_dir``; the evaluation itself is ``rl.evaluation.play`` and ``rl.evaluation.stats``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from data_prep import DataFormatError, build_selfplay_pairs, resolve_data_path
from data_prep.files.atomic import write_text_atomic
from data_prep.personas import persona_key
from launch.errors import read_data
from launch.provenance import run_provenance
from models.loading.pretrained import model_identity, resolve_device, resolve_dtype, same_model
from models.networks.receiver import Receiver
from models.networks.transmitter import Transmitter, saved_reward_models
from models.prompting.prompt import PromptFormatter
from models.scoring.judges import LMJudge, LMPersonaJudge, NLIJudge, PersonaJudge
from models.scoring.lexical import TfidfPersonaScorer
from models.scoring.scorers import LMScorer
from rl.evaluation.play import Judges, JudgeSettings, ModelEval, judge, play
from rl.evaluation.stats import compare, comparison_table, corpus_distinct, samples_markdown, summarize, summary_table
from rl.evaluation.transcripts import (
    DIALOGUES_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    TABLE_FILE,
    dump_records,
    in_order_of,
    load_compare_transcripts,
    weights_fingerprint,
)
from rl.selfplay import Sampling


class LoadError(Exception):
    """A model or data argument that cannot be loaded; the message names it."""


def label(name: str) -> str:
    """A short display name: ``runs/x/sft/model`` → ``sft/model``."""
    parts = Path(str(name).rstrip("/")).parts
    return "/".join(parts[-2:]) if len(parts) > 1 and parts[-1] in ("model", "policy") else (parts[-1] if parts else name)


def _load(what: str, name: str, loader):
    try:
        return loader()
    except (OSError, ValueError, KeyError) as err:
        raise LoadError(f"{what} {name!r}: {err}") from err


def build_judges(cfg, device: str, data_dialogues=None) -> tuple[Judges, list[str]]:
    """The frozen judges of ``cfg`` and notes on what was skipped. ``data_dialogues``: every dialogue of ``cfg.data``,
    already read (reused when ``--seen_personas_from`` names the same file)."""
    skipped = []
    encoder = _load("--judge_encoder", cfg.judge_encoder, lambda: Receiver.from_pretrained(cfg.judge_encoder, device=device))
    lm = persona_lm = t = None
    if cfg.judge_lm.lower() != "none":
        t = _load("--judge_lm", cfg.judge_lm, lambda: Transmitter.from_pretrained(
            cfg.judge_lm, device=device, torch_dtype=resolve_dtype(cfg.torch_dtype)).eval())
        lm = LMJudge(LMScorer(t, t.tokenizer, disable_adapter=False),
                     PromptFormatter(t.tokenizer, max_history_tokens=cfg.max_history_tokens), cfg.judge_context)
    else:
        skipped.append("fluency: --judge_lm none")
    if cfg.judge_persona_lm.lower() != "none":  # the fluency judge's model when it is the same one: loaded once
        plm = t if t is not None and cfg.judge_persona_lm == cfg.judge_lm else _load(
            "--judge_persona_lm", cfg.judge_persona_lm, lambda: Transmitter.from_pretrained(
                cfg.judge_persona_lm, device=device, torch_dtype=resolve_dtype(cfg.torch_dtype)).eval())
        persona_lm = LMPersonaJudge(plm, max_context_tokens=cfg.max_history_tokens)
    receiver = None
    if cfg.receiver:
        receiver = PersonaJudge(_load("--receiver", cfg.receiver, lambda: Receiver.from_pretrained(cfg.receiver, device=device)),
                                cfg.judge_aggregate)
    nli = None
    if cfg.nli_model:
        nli = _load("--nli_model", cfg.nli_model, lambda: NLIJudge.from_pretrained(cfg.nli_model, device=device))
    else:
        skipped.append("consistency: no --nli_model given (any MNLI-style sequence-classification checkpoint)")
    seen = None
    if cfg.seen_personas_from:
        same = data_dialogues is not None and resolve_data_path(cfg.seen_personas_from) == resolve_data_path(cfg.data)
        trained = (data_dialogues if same else read_data(cfg.seen_personas_from).dialogues)[cfg.seen_personas_skip:]
        seen = frozenset(persona_key(p) for d in trained for p in (d.persona_a, d.persona_b) if p)
    settings = JudgeSettings(num_candidates=cfg.num_persona_candidates, seen_personas=seen)
    sentences = sorted({s for d in data_dialogues or [] for p in (d.persona_a, d.persona_b) if p for s in p})
    lexical = PersonaJudge(TfidfPersonaScorer(sentences), cfg.judge_aggregate)  # IDF over the data's personas
    return Judges(PersonaJudge(encoder, cfg.judge_aggregate), lm, receiver, nli, lexical, persona_lm, settings), skipped


# the judges a reward model may also be: (option, config field, the reward role it is compared with, model kind)
JUDGE_OPTIONS = (("--judge_encoder", "judge_encoder", "receiver", "receiver"), ("--judge_lm", "judge_lm", "lm", "policy"),
                 ("--judge_persona_lm", "judge_persona_lm", "lm", "policy"), ("--receiver", "receiver", "receiver", "receiver"))
ROLE_NAMES = {"receiver": "the Receiver its persona rewards scored with", "lm": "the LM its fluency/coherence rewards scored with"}


def judge_warnings(cfg, names: list[str]) -> list[str]:
    """One line per judge that is a reward model an evaluated model was RL-trained against (its saved
    ``reward_models``: same name or same resolved path). ``--receiver`` is that by design: reported apart."""
    warnings = []
    for name in names:
        trained_against = _load("model", name, partial(saved_reward_models, name))
        for flag, field_name, role, kind in JUDGE_OPTIONS:
            value = getattr(cfg, field_name)
            if not value or value.lower() == "none" or not trained_against.get(role):
                continue
            judge_id = _load(flag, value, partial(model_identity, value, kind))
            match = next((m for m in trained_against[role] if same_model(judge_id, m)), None)
            if match is None:
                continue
            what = f"{flag} {value!r} is {ROLE_NAMES[role]} when RL trained {label(name)} ({match['name']})"
            warnings.append(f"{what}: reported apart: RL optimised it" if flag == "--receiver" else
                            f"{what}: not an independent judge; pass {flag} a model RL did not optimise")
    return warnings


def evaluate_model(name: str, cfg, pairs, pool, judges: Judges, partner, device: str, display: str) -> ModelEval:
    model = _load("model", name, lambda: Transmitter.from_pretrained(
        name, device=device, torch_dtype=resolve_dtype(cfg.torch_dtype)).eval())
    formatter = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)
    sampling = Sampling(cfg.do_sample, cfg.temperature, cfg.top_k, cfg.top_p)
    start = time.perf_counter()
    with tqdm(total=len(pairs), desc=f"self-play {label(name)}", unit="pair", file=sys.stderr) as bar:
        played = play(model, pairs, formatter, dialogues_per_pair=cfg.dialogues_per_pair, exchanges=cfg.exchanges,
                      sampling=sampling, partner=partner, response_length=cfg.max_new_tokens, seed=cfg.seed,
                      batch_pairs=cfg.batch_pairs, generation_backend=cfg.generation_backend, progress=bar.update)
    play_s = time.perf_counter() - start
    start = time.perf_counter()
    ev = judge(display, played, judges, pool, seed=cfg.seed)
    ev.seconds.update(selfplay=play_s, judging=time.perf_counter() - start)
    return ev


def judge_transcripts(reused: list, played_by: ModelEval, cfg, setup: Setup, display: str) -> ModelEval:
    """Judge the ``--compare`` model's dialogues read by ``--compare_transcripts``, in the play order of ``played_by``
    (a model this run played on the same pairs), as the paired comparison needs."""
    print(f"{label(cfg.compare)}: {len(reused)} dialogues read from {cfg.compare_transcripts}, judged again",
          file=sys.stderr)
    start = time.perf_counter()
    ev = judge(display, in_order_of(reused, played_by.dialogues), setup.judges, setup.pool, seed=cfg.seed)
    ev.seconds.update(selfplay=0.0, judging=time.perf_counter() - start)
    return ev


@dataclass
class Setup:
    """What every self-play evaluation of ``cfg`` shares: the pairs, the distractor pool, the judges, the partner."""

    pairs: list[dict]
    pool: list[list[str]]
    judges: Judges
    skipped: list[str]
    partner: object | None
    device: str


def prepare(cfg) -> Setup:
    """Load the pairs (``skip_pairs`` then ``pairs`` of the selected dialogues), the judges and the fixed partner.

    Raises ``DataFormatError``, ``FileNotFoundError``, ``ValueError`` or ``LoadError`` with a message naming the input.
    """
    device = resolve_device(cfg.device)
    everything = read_data(cfg.data, cfg.data_format).dialogues
    dialogues = everything[cfg.skip_dialogues:]
    dialogues = dialogues[: cfg.max_dialogues] if cfg.max_dialogues else dialogues
    pairs = list(build_selfplay_pairs(dialogues, seed=cfg.seed))[cfg.skip_pairs:]
    pairs = pairs[: cfg.pairs] if cfg.pairs else pairs
    if not pairs:
        raise ValueError(f"{cfg.data or 'sample'}: no persona pair left in the selected range "
                         f"(skip_dialogues={cfg.skip_dialogues}, max_dialogues={cfg.max_dialogues}, "
                         f"skip_pairs={cfg.skip_pairs})")
    pool = [p for d in everything for p in (d.persona_a, d.persona_b) if p]
    judges, skipped = build_judges(cfg, device, everything)
    partner = None
    if cfg.partner:
        partner = _load("--partner", cfg.partner, lambda: Transmitter.from_pretrained(
            cfg.partner, device=device, torch_dtype=resolve_dtype(cfg.torch_dtype)).eval())
    return Setup(pairs, pool, judges, skipped, partner, device)


def unseen_speakers(ev: ModelEval) -> tuple[int, int]:
    """(judged speakers whose persona is not among the seen ones, judged speakers)."""
    unseen = ev.tallies.get("perceive_hits1_unseen")
    total = int(ev.tallies["perceive_hits1"][1].sum()) if "perceive_hits1" in ev.tallies else 0
    return (int(unseen[1].sum()) if unseen is not None else 0), total


def run_selfplay_eval(cfg, argv: list[str] | None = None, prog: str = "p2bot eval") -> int:
    out = Path(cfg.output_dir)
    try:
        setup = prepare(cfg)
        pairs, device, skipped = setup.pairs, setup.device, setup.skipped
        names = [cfg.model] + ([cfg.compare] if cfg.compare else [])
        print(f"p2bot eval --selfplay: {len(pairs)} held-out pairs x {cfg.dialogues_per_pair} dialogues x {cfg.exchanges} "
              f"exchanges, models {', '.join(names)}, device {device}", file=sys.stderr)
        warnings = judge_warnings(cfg, names)
        for line in warnings:
            print(f"p2bot eval: warning: {line}", file=sys.stderr)
        displays = [label(n) for n in names]
        if len(displays) == 2 and displays[0] == displays[1]:
            displays = [f"{displays[0]} (model)", f"{displays[1]} (compare)"]
        reused = (load_compare_transcripts(cfg.compare_transcripts, cfg, pairs, device)
                  if cfg.compare_transcripts else None)
        evals = [evaluate_model(n, cfg, pairs, setup.pool, setup.judges, setup.partner, device, d)
                 for n, d in zip(names[:1] if reused else names, displays)]
        if reused:
            evals.append(judge_transcripts(reused, evals[0], cfg, setup, displays[1]))
    except (DataFormatError, FileNotFoundError, ValueError, LoadError) as err:
        print(f"p2bot eval: error: {err}", file=sys.stderr)
        return 1
    summaries = {ev.name: summarize(ev, cfg.bootstrap_samples, cfg.seed) for ev in evals}
    tables = [f"### {ev.name}\n\n" + summary_table(ev.name, summaries[ev.name]) for ev in evals]
    payload = dict(models=names, labels=[ev.name for ev in evals], data=cfg.data or "sample", num_pairs=len(pairs),
                   dialogues_per_pair=cfg.dialogues_per_pair, exchanges=cfg.exchanges, device=device, skipped=skipped,
                   judges=dict(encoder=cfg.judge_encoder, lexical="tfidf", aggregate=cfg.judge_aggregate, lm=cfg.judge_lm,
                               persona_lm=cfg.judge_persona_lm, lm_context=cfg.judge_context, receiver=cfg.receiver, nli=cfg.nli_model),
                   seen_personas=dict(source=cfg.seen_personas_from, skip_dialogues=cfg.seen_personas_skip,
                                      unseen_speakers={ev.name: unseen_speakers(ev) for ev in evals}),
                   summaries=summaries, corpus_distinct={ev.name: corpus_distinct(ev) for ev in evals},
                   seconds={ev.name: ev.seconds for ev in evals},
                   fingerprints={n: weights_fingerprint(n) for n in names}, compare_transcripts=cfg.compare_transcripts,
                   warnings=warnings, provenance=run_provenance(prog, argv, cfg))
    if len(evals) == 2:
        payload["comparison"] = compare(evals[0], evals[1], cfg.bootstrap_samples, cfg.seed)
        tables.insert(0, f"### {evals[0].name} vs {evals[1].name} (paired over {len(pairs)} pairs)\n\n"
                      + comparison_table(evals[0].name, evals[1].name, payload["comparison"]))
    out.mkdir(parents=True, exist_ok=True)
    table = ("\n\n".join(tables) + "\n" + "".join(f"\nSkipped: {s}" for s in skipped)
             + "".join(f"\nWarning: {w}" for w in warnings) + "\n")
    if cfg.seen_personas_from:
        counts = unseen_speakers(evals[0])
        table += (f"\nPersonas not in {cfg.seen_personas_from} (after its first {cfg.seen_personas_skip} dialogues): "
                  f"{counts[0]} of {counts[1]} judged speakers (the '... training never saw' rows).\n")
    write_text_atomic(out / TABLE_FILE, table)
    write_text_atomic(out / SAMPLES_FILE, samples_markdown(evals, cfg.num_sample_dialogues))
    write_text_atomic(out / DIALOGUES_FILE, dump_records(evals))
    write_text_atomic(out / RESULTS_FILE, json.dumps(payload, indent=2) + "\n")
    print(table)
    print(f"results: {out / RESULTS_FILE}, {out / TABLE_FILE}, {out / SAMPLES_FILE}, {out / DIALOGUES_FILE}")
    return 0
