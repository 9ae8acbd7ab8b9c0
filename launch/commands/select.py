"""``p2bot select``: which checkpoint of an RL run to ship, chosen by self-play on validation pairs under guards.

Every candidate (by default each ``checkpoint-*/policy`` of an RL ``output_dir``) and the baseline ``--compare`` (the
run's start model, e.g. SFT) talk on the same persona pairs with the same seeds, scored by the frozen judges of
``p2bot eval --selfplay`` (every self-play option of ``eval`` applies). The chosen candidate has the highest
``--metric`` (judge Hits@1) among those that beat the baseline on it and keep the guards: judge PPL at most
``--max_ppl_increase`` above the baseline's, copy and echo rates (``--guards``) no higher than the baseline's. Use pairs disjoint from the ones you
report results on (``--skip_pairs``): a selection made on the test pairs makes the test a selection.
``--compare_transcripts DIR`` judges the baseline's dialogues from an earlier ``eval --selfplay`` run on the same
validation pairs and settings instead of playing them again (checked as in ``eval``). Writes
``selection.json`` (every candidate's paired comparison, the rule, the choice and its path) and ``selection.md``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from data_prep import DataFormatError
from data_prep.files.atomic import write_text_atomic
from launch.commands.eval import EvalConfig
from launch.commands.eval_selfplay import LoadError, evaluate_model, judge_transcripts, label, prepare
from launch.config_io import start_command
from rl.checkpoint import list_checkpoints
from rl.evaluation.selection import SelectionRule, check, choose, selection_table
from rl.evaluation.stats import compare
from rl.evaluation.transcripts import load_compare_transcripts

RESULTS_FILE, TABLE_FILE = "selection.json", "selection.md"
FALLBACKS = ("last", "fail")


@dataclass
class SelectConfig(EvalConfig):
    model: str = field(default="", metadata={"help": "not used by select: the candidates are --candidates"})
    candidates: str = field(default="", metadata={
        "help": "an RL output_dir (each of its checkpoint-*/policy, oldest first) or comma-separated model paths"})
    metric: str = field(default="perceive_hits1", metadata={"help": "maximised among the candidates that keep the guards"})
    min_gain: float = field(default=0.0, metadata={
        "help": "a candidate must beat the baseline's --metric by more than this fraction (0: any gain)"})
    max_ppl_increase: float | None = field(default=0.10, metadata={
        "help": "judge PPL at most this fraction above the baseline's (null: no PPL guard)"})
    guards: str = field(default="copy_rate,echo_rate", metadata={
        "help": "comma-separated metrics a candidate may not have above the baseline's ('' for none)"})
    if_none_eligible: str = field(default="last", metadata={
        "help": "when no candidate keeps every guard: 'last' names the last candidate (and says so), 'fail' exits 3"})
    output_dir: str = field(default="runs/select", metadata={"help": "where selection.json and selection.md go"})

    def __post_init__(self):
        self.selfplay = True
        super().__post_init__()
        if self.model:
            raise ValueError("--model is not used by select: give the candidates with --candidates")
        if not self.candidates:
            raise ValueError("--candidates is required: an RL output_dir or comma-separated model paths")
        if not self.compare:
            raise ValueError("--compare is required: the baseline (the run's start model) the guards compare with")
        if self.if_none_eligible not in FALLBACKS:
            raise ValueError(f"if_none_eligible={self.if_none_eligible!r}: expected one of {FALLBACKS}")
        self.rule()  # a clear error for an unknown metric now, not after the self-play

    def rule(self) -> SelectionRule:
        guards = tuple(g.strip() for g in self.guards.split(",") if g.strip())
        return SelectionRule(self.metric, self.min_gain, self.max_ppl_increase, guards)


def candidate_paths(spec: str) -> list[Path]:
    """The candidates' model paths: every ``checkpoint-*/policy`` of a run directory, or the listed paths."""
    path = Path(spec)
    if "," not in spec and path.is_dir() and not (path / "config.json").is_file():
        found = [c / "policy" for c in list_checkpoints(path) if (c / "policy").is_dir()]
        if not found:
            raise FileNotFoundError(f"--candidates {spec}: no checkpoint-*/policy in this directory")
        return found
    paths = [Path(p.strip()) for p in spec.split(",") if p.strip()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"--candidates: no such model directory: {', '.join(missing)}")
    return paths


def candidate_name(path: Path) -> str:
    return path.parent.name if path.name == "policy" else label(str(path))


CONFIG_TYPES = (SelectConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    cfg, out = start_command(*CONFIG_TYPES, argv, prog="p2bot select", description=__doc__)
    rule = cfg.rule()
    try:
        paths = candidate_paths(cfg.candidates)
        setup = prepare(cfg)
        print(f"p2bot select: {len(paths)} candidates vs baseline {cfg.compare} on {len(setup.pairs)} pairs "
              f"(skipping the first {cfg.skip_pairs}) x {cfg.dialogues_per_pair} dialogues x {cfg.exchanges} exchanges",
              file=sys.stderr)
        args = (cfg, setup.pairs, setup.pool, setup.judges, setup.partner, setup.device)
        reused = (load_compare_transcripts(cfg.compare_transcripts, cfg, setup.pairs, setup.device)
                  if cfg.compare_transcripts else None)
        display = f"baseline {label(cfg.compare)}"
        baseline = None if reused else evaluate_model(cfg.compare, *args, display)
        candidates = []
        for path in paths:
            ev = evaluate_model(str(path), *args, candidate_name(path))
            if baseline is None:  # the reused dialogues, judged in the order this run plays the pairs
                baseline = judge_transcripts(reused, ev, cfg, setup, display)
            candidates.append(check(ev.name, compare(ev, baseline, cfg.bootstrap_samples, cfg.seed), rule))
    except (DataFormatError, FileNotFoundError, ValueError, LoadError) as err:
        print(f"p2bot select: error: {err}", file=sys.stderr)
        return 1
    chosen = choose(candidates)
    fallback = chosen is None and cfg.if_none_eligible == "last"
    picked = candidates[-1] if fallback else chosen
    path_of = {id(c): str(p) for c, p in zip(candidates, paths)}  # names may repeat across run directories
    note = ("" if chosen else "No candidate beats the baseline and keeps every guard"
            + (f": falling back to the last, {picked.name}." if fallback else "."))
    table = selection_table(candidates, chosen, rule) + (f"\n\n{note}" if note else "") + "\n"
    payload = dict(candidates=[dict(name=c.name, path=path_of[id(c)], value=c.value, eligible=c.eligible,
                                    violations=c.violations, comparison=c.comparison) for c in candidates],
                   baseline=cfg.compare, rule=dataclasses.asdict(rule),
                   data=cfg.data or "sample", num_pairs=len(setup.pairs), skip_pairs=cfg.skip_pairs,
                   dialogues_per_pair=cfg.dialogues_per_pair, exchanges=cfg.exchanges, skipped=setup.skipped,
                   chosen=picked.name if picked else None, chosen_path=path_of[id(picked)] if picked else None,
                   eligible=chosen is not None)
    write_text_atomic(out / TABLE_FILE, table)
    write_text_atomic(out / RESULTS_FILE, json.dumps(payload, indent=2) + "\n")
    print(table)
    print(f"results: {out / RESULTS_FILE}, {out / TABLE_FILE}")
    if picked is None:
        print("p2bot select: error: no candidate beats the baseline and keeps every guard (--if_none_eligible fail)",
              file=sys.stderr)
        return 3
    print(f"chosen: {payload['chosen_path']}")
    return 0
