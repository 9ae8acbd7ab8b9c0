"""``p2bot recipe``: a whole experiment from one YAML: SFT → Receiver → RL (→ average) → self-play evaluation of
RL vs SFT → RL vs SFT on held-out gold turns.

The recipe file names the data and how many of its first dialogues are held out, plus one mapping of options per
stage (``sft``, ``receiver``, ``rl``, ``eval``: the options of that ``p2bot`` command; ``gold``: options of
``p2bot eval`` without ``--selfplay``, for F1, Hits@1 and perplexity on the held-out dialogues' own turns). The
recipe wires the stages together and enforces the split: SFT, the Receiver and RL never see the held-out dialogues,
and the evaluations use only those. The evaluation takes RL's last checkpoint. With ``rl_seeds: [0, 1, ...]`` RL
runs once per seed (into ``rl/seed-<S>``) and ``p2bot average`` averages the runs' last policies into
``average/model``, which the evaluations take; then each seed's own last policy is judged against the same SFT
dialogues (``eval/seed-<S>``) and SFT's gold values (``gold/seed-<S>``), and the report tables every seed and the
average on the targets of ``rl.evaluation.targets``. The evaluation also reports perceivability over the speakers
whose persona the training split does not contain. A stage whose output is complete is skipped, so an interrupted
recipe continues where it stopped (RL resumes from its last checkpoint); ``--force`` reruns every stage.
``--parallel`` runs independent stages side by side as processes with an equal share of the CPU threads, their
output in ``<output_dir>/<stage>.log``: SFT and the Receiver, the RL seeds, the seeds' evaluations. Writes
``<output_dir>/<stage>.yaml`` (each stage's config), the stages' folders, and ``report.md`` / ``recipe.json``
(seconds per stage, and wall-clock seconds per step of the run).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from data_prep.files.atomic import write_text_atomic
from launch.config_io import canonical_keys
from launch.provenance import run_provenance

STAGES = ("sft", "receiver", "rl", "average", "eval", "gold")
MAPPINGS = ("sft", "receiver", "rl", "eval", "gold")  # the stages a recipe gives options to
COMMANDS = {"gold": "eval"}  # a stage whose p2bot command is not its name
TOP_KEYS = {"output_dir", "data", "heldout_dialogues", "seed", "rl_seeds", *MAPPINGS}
OVERRIDABLE = {"sft": {"model", "seed"}, "receiver": {"model_name_or_path", "seed"}, "rl": {"seed"}, "eval": {"seed"},
               "gold": {"seed"}}


class RecipeError(ValueError):
    pass


def load_recipe(path: str | os.PathLike) -> dict:
    """The recipe mapping, checked: known top-level keys, a mapping per stage, a non-negative hold-out."""
    try:
        recipe = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"{path}: cannot read the recipe: {err}") from err
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping, got {type(recipe).__name__}")
    if "select" in recipe:
        raise RecipeError(f"{path}: field 'select': a recipe has no checkpoint-selection stage (the evaluation takes "
                          "RL's last checkpoint, or the average of rl_seeds); remove it, and run p2bot select on the "
                          "RL run's checkpoints on its own")
    unknown = set(recipe) - TOP_KEYS
    if unknown:
        raise RecipeError(f"{path}: unknown keys {sorted(unknown)} (expected {sorted(TOP_KEYS)})")
    for stage in MAPPINGS:
        if not isinstance(recipe.get(stage, {}) or {}, dict):
            raise RecipeError(f"{path}: field '{stage}': expected a mapping of p2bot {COMMANDS.get(stage, stage)} "
                              "options")
    if int(recipe.get("heldout_dialogues", 0)) < 1:
        raise RecipeError(f"{path}: field 'heldout_dialogues': hold out at least one dialogue for the evaluation")
    if recipe.get("rl_seeds") is not None:
        check_rl_seeds(recipe, f"{path}: field 'rl_seeds'")
    return recipe


def check_rl_seeds(recipe: dict, where: str) -> None:
    """``rl_seeds``: two or more distinct integers, and no ``seed`` of its own in the ``rl`` mapping."""
    seeds = recipe["rl_seeds"]
    if (not isinstance(seeds, list) or len(seeds) < 2 or not all(isinstance(x, int) for x in seeds)
            or len(set(seeds)) != len(seeds)):
        raise RecipeError(f"{where}: expected a list of two or more distinct integer seeds, got {seeds!r}")
    if "seed" in (recipe.get("rl") or {}):
        raise RecipeError(f"{where}: field 'rl': 'seed' is set by 'rl_seeds'")


def rl_seeds(recipe: dict) -> list[int] | None:
    """The seeds of the RL runs whose last policies are averaged (``rl_seeds``), or None for one run."""
    return recipe.get("rl_seeds")


def stage_names(recipe: dict) -> list[str]:
    """The stages of this recipe in order: with ``rl_seeds``, ``rl`` is one ``rl-seed<S>`` per RL seed, ``average``
    follows them, and after ``eval`` and ``gold`` (of the average) one ``eval-seed<S>`` / ``gold-seed<S>`` per seed
    evaluates that seed's own last policy."""
    seeds = rl_seeds(recipe)
    names = []
    for stage in STAGES:
        if stage == "rl" and seeds:
            names += [f"rl-seed{s}" for s in seeds]
        elif not (stage == "average" and not seeds):
            names.append(stage)
        if stage in ("eval", "gold") and seeds:
            names += [f"{stage}-seed{s}" for s in seeds]
    return names


def mapping_of(stage: str) -> str:
    """The recipe mapping a stage takes its options from (``rl-seed3`` → ``rl``)."""
    return stage.split("-seed")[0]


def command_of(stage: str) -> str:
    """The ``p2bot`` command a stage runs (``rl-seed3`` → ``rl``, ``gold-seed3`` → ``eval``)."""
    return COMMANDS.get(mapping_of(stage), mapping_of(stage))


def _seed_of(stage: str) -> int:
    """The RL seed of an ``rl-seed<S>`` stage."""
    return int(stage.split("-seed")[1])


def rl_dir(out: Path, stage: str) -> Path:
    """Where a RL stage writes: ``rl`` (one run) or ``rl/seed-<S>``."""
    return out / "rl" if stage == "rl" else out / "rl" / f"seed-{_seed_of(stage)}"


def rl_last_policy(out: Path, stage: str, recipe: dict) -> Path:
    """The policy of a RL stage's last checkpoint (``max_steps``): what ``average``/``eval`` take, and its completion."""
    return rl_dir(out, stage) / f"checkpoint-{_rl_steps(recipe)}" / "policy"


def _final_policy(rl_dir: Path) -> Path | None:
    checkpoints = sorted(rl_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return checkpoints[-1] / "policy" if checkpoints else None


def _rl_steps(recipe: dict) -> int:
    return int((recipe.get("rl") or {}).get("max_steps", 30))


def stage_configs(recipe: dict, out: Path, force: bool = False) -> dict[str, dict]:
    """Each stage's options: the recipe's, with the wiring and the hold-out split enforced on top. An RL stage
    resumes from its last checkpoint, unless ``force`` (``--force``: it trains again from step 0)."""
    data, held = recipe.get("data", ""), int(recipe["heldout_dialogues"])
    seed = recipe.get("seed", 0)
    seeds = rl_seeds(recipe)
    rl_stages = [s for s in stage_names(recipe) if command_of(s) == "rl"]
    finals = [str(rl_last_policy(out, s, recipe)) for s in rl_stages]
    last = str(out / "average" / "model") if seeds else finals[0]
    fixed = {
        "sft": dict(model="embedded", data=data, skip_dialogues=held, output_dir=str(out / "sft"),
                    with_value_head=True, seed=seed),
        "receiver": dict(model_name_or_path="embedded", data=data, holdout_first=held,
                         output_dir=str(out / "receiver"), seed=seed),
        **{stage: dict(model_name_or_path=str(out / "sft" / "model"),
                       receiver_name_or_path=str(out / "receiver" / "model"), data=data, skip_dialogues=held,
                       output_dir=str(rl_dir(out, stage)), seed=_seed_of(stage) if seeds else seed,
                       resume_from_checkpoint="latest" if _final_policy(rl_dir(out, stage)) and not force else None)
           for stage in rl_stages},
        "average": dict(models=",".join(finals), output_dir=str(out / "average")),
        "eval": dict(selfplay=True, model=last,
                     compare=str(out / "sft" / "model"), receiver=str(out / "receiver" / "model"), data=data,
                     skip_dialogues=0, max_dialogues=held, output_dir=str(out / "eval"), seed=seed,
                     seen_personas_from=data or "sample", seen_personas_skip=held),
    }
    fixed["gold"] = dict(selfplay=False, model=last, compare=str(out / "sft" / "model"), data=data, skip_dialogues=0,
                         max_dialogues=held, output_dir=str(out / "gold"), seed=seed)
    for stage in (s for s in stage_names(recipe) if "-seed" in s and mapping_of(s) in ("eval", "gold")):
        policy = str(rl_last_policy(out, f"rl-seed{_seed_of(stage)}", recipe))
        reuse = ({"compare_transcripts": str(out / "eval" / "selfplay_dialogues.jsonl")} if mapping_of(stage) == "eval"
                 else {"compare_results": str(out / "gold")})  # SFT played or scored once
        fixed[stage] = {**fixed[mapping_of(stage)], "model": policy, **reuse, "output_dir": str(eval_dir(out, stage))}
    configs = {}
    for stage in stage_names(recipe):
        command, mapping = command_of(stage), mapping_of(stage)
        given = canonical_keys(f"p2bot {command}", recipe.get(mapping) or {})
        clash = (set(given) & set(fixed[stage])) - OVERRIDABLE.get(mapping, set())
        if clash:
            raise RecipeError(f"field '{mapping}': {sorted(clash)} are set by the recipe (data split and stage wiring)")
        configs[stage] = {**fixed[stage], **given}
    return configs


def done(stage: str, out: Path, recipe: dict) -> bool:
    """Whether a stage's output is complete."""
    if stage == "sft":
        return (out / "sft" / "model" / "p2bot_transmitter.json").is_file()
    if stage == "receiver":
        return (out / "receiver" / "model" / "p2bot_receiver.json").is_file()
    if command_of(stage) == "rl":
        return (rl_last_policy(out, stage, recipe) / "p2bot_transmitter.json").is_file()
    return _marker(stage, out).is_file()


def _marker(stage: str, out: Path) -> Path:
    """The file whose presence makes an average or evaluation stage complete."""
    if stage == "average":
        return out / "average" / "model" / "p2bot_transmitter.json"
    return eval_dir(out, stage) / ("eval_results.json" if mapping_of(stage) == "gold" else "selfplay_results.json")


def stale(stage: str, out: Path, config: dict) -> str | None:
    """Why a complete average or evaluation stage must run again, or None: its options changed since it ran (its
    ``<stage>.yaml``), or a file it was made from (a policy, SFT's dialogues or values) is newer than its output.
    Training stages are never stale: RL resumes from its checkpoints."""
    if command_of(stage) not in ("average", "eval"):
        return None
    written = out / f"{stage}.yaml"
    if written.is_file() and yaml.safe_load(written.read_text()) != config:
        return f"its options differ from {written}"
    if stage == "average":
        inputs = [Path(m) / "p2bot_transmitter.json" for m in config["models"].split(",")]
    else:
        inputs = [Path(config[k]) / "p2bot_transmitter.json" for k in ("model", "compare") if config.get(k)]
        inputs += [Path(config["compare_transcripts"])] if config.get("compare_transcripts") else []
        inputs += [Path(config["compare_results"]) / "eval_results.json"] if config.get("compare_results") else []
    made = _marker(stage, out).stat().st_mtime
    newer = [str(p.parent if p.name == "p2bot_transmitter.json" else p) for p in inputs
             if p.is_file() and p.stat().st_mtime > made]
    return f"{', '.join(newer)} changed after it ran" if newer else None


def eval_dir(out: Path, stage: str) -> Path:
    """Where an evaluation stage writes: ``eval`` / ``gold`` (the recipe's policy) or ``eval/seed-<S>`` /
    ``gold/seed-<S>`` (one RL seed's)."""
    mapping = mapping_of(stage)
    return out / mapping if stage == mapping else out / mapping / f"seed-{_seed_of(stage)}"


def _write_config(stage: str, config: dict, out: Path) -> Path:
    path = out / f"{stage}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def run_stage(stage: str, config: dict, out: Path) -> None:
    path = _write_config(stage, config, out)
    print(f"\n=== [recipe] {stage}: p2bot {command_of(stage)} --config {path}", flush=True)
    rc = importlib.import_module(f"launch.commands.{command_of(stage)}").main(["--config", str(path)])
    if rc not in (0, None):
        raise RecipeError(f"stage {stage!r} failed with exit code {rc}")


def side_by_side(recipe: dict) -> list[tuple[str, ...]]:
    """Groups of stages independent of each other, which ``--parallel`` runs as concurrent processes: SFT and the
    Receiver; the RL runs of ``rl_seeds``; the evaluations of each seed (self-play, then gold turns)."""
    names = stage_names(recipe)
    return [("sft", "receiver"), *(tuple(s for s in names if s.startswith(f"{m}-seed")) for m in ("rl", "eval", "gold"))]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_side_by_side(stages: list[str], configs: dict[str, dict], out: Path) -> tuple[dict[str, float], list[str]]:
    """Run ``stages`` as concurrent ``p2bot <stage>`` processes, each with an equal share of the CPU threads and its
    output in ``<out>/<stage>.log``; wait for all (a failed one does not stop the others, whose output a rerun
    keeps). Returns the seconds of each stage that succeeded, and one error message per failed stage."""
    threads = str(max(1, _cpu_count() // len(stages)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    procs, seconds, failed = {}, {}, []
    for stage in stages:
        path, log = _write_config(stage, configs[stage], out), out / f"{stage}.log"
        print(f"=== [recipe] {stage}: p2bot {command_of(stage)} --config {path}  ({threads} threads, output in {log})",
              flush=True)
        with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
            procs[stage] = (subprocess.Popen([sys.executable, "-m", "launch.cli", command_of(stage), "--config", str(path)],
                                             stdout=handle, stderr=subprocess.STDOUT, env=env), time.time())
    while procs:  # poll, so that each stage's time ends when it does
        for stage, (proc, start) in list(procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del procs[stage]
            log = out / f"{stage}.log"
            print(f"=== [recipe] {stage}: exit code {rc} after {(time.time() - start) / 60:.1f} min", flush=True)
            if rc == 0:
                seconds[stage] = round(time.time() - start, 1)
            else:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                failed.append(f"stage {stage!r} failed with exit code {rc}; last lines of {log}:\n  "
                              + "\n  ".join(tail))
        time.sleep(0.5 if procs else 0)
    return seconds, failed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2bot recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the recipe YAML (e.g. launch/configs/experiments/p2_spc.yaml)")
    parser.add_argument("--output_dir", help="overrides the recipe's output_dir")
    parser.add_argument("--data", help="overrides the recipe's data (the dialogue file every stage reads)")
    parser.add_argument("--rl_seeds", type=int, nargs="+", metavar="SEED",
                        help="overrides the recipe's rl_seeds, e.g. to add seeds to a finished run: its complete "
                             "stages are skipped")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated subset of sft,receiver,rl,average,eval,gold (rl: every RL seed)")
    parser.add_argument("--force", action="store_true", help="rerun every stage from the start, even where its output is complete (RL from step 0)")
    parser.add_argument("--parallel", action="store_true",
                        help="run SFT and the Receiver side by side (two processes, half the CPU threads each), "
                             "and the RL runs of rl_seeds, and their evaluations, side by side")
    parser.add_argument("--max_parallel", type=int, default=0,
                        help="with --parallel, at most this many processes at once (0: no limit); e.g. 2 when memory "
                             "holds only two RL runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_parallel < 0:
        parser.error(f"--max_parallel {args.max_parallel}: must be >= 0")
    try:
        recipe = load_recipe(args.config)
        if args.data:
            recipe["data"] = args.data
        if args.rl_seeds:
            recipe["rl_seeds"] = args.rl_seeds
            check_rl_seeds(recipe, "--rl_seeds")
        asked = [s.strip() for s in args.stages.split(",") if s.strip()]
        if set(asked) - set(STAGES):
            raise RecipeError(f"--stages: unknown stages {sorted(set(asked) - set(STAGES))}")
        stages = [s for s in stage_names(recipe) if mapping_of(s) in asked]
        out = Path(args.output_dir or recipe.get("output_dir", "runs/recipe"))
        out.mkdir(parents=True, exist_ok=True)
        timings_file = out / "recipe.json"
        saved = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        timings, wall = saved.get("seconds", {}), saved.get("wall_seconds", {})

        def record() -> None:
            provenance = run_provenance("p2bot recipe", argv, recipe)
            write_text_atomic(timings_file, json.dumps({"config": str(args.config), "seconds": timings, "wall_seconds": wall,
                                                         "provenance": provenance}, indent=2) + "\n")

        side_by_side_done: set[str] = set()
        for stage in stages:
            if stage in side_by_side_done:
                continue
            configs = stage_configs(recipe, out, force=args.force)  # after each stage: RL's resume point may have appeared
            if done(stage, out, recipe) and not args.force:
                why = stale(stage, out, configs[stage])
                if why is None:
                    print(f"=== [recipe] {stage}: complete, skipped (--force reruns it)")
                    continue
                print(f"=== [recipe] {stage}: complete but stale ({why}): running it again")
            together = [stage]
            group = next((g for g in side_by_side(recipe) if stage in g), ())
            if args.parallel and group:  # with the other pending stages of its group
                together = [s for s in group if s in stages and (args.force or not done(s, out, recipe)
                                                                 or stale(s, out, configs[s]))]
                together = together[:args.max_parallel] if args.max_parallel > 0 else together  # the rest: later
            start, failed = time.time(), []
            if len(together) > 1:
                seconds, failed = run_side_by_side(together, configs, out)
                timings.update(seconds)
                side_by_side_done.update(together)
                ran = [s for s in together if s in seconds]  # a failed stage is not timed: its rerun is
            else:
                run_stage(stage, configs[stage], out)
                ran = [stage]
                timings[stage] = round(time.time() - start, 1)
            for key in [k for k in wall if set(k.split("+")) & set(together)]:  # a rerun replaces its old record
                del wall[key]
            if ran:
                wall["+".join(ran)] = round(time.time() - start, 1)
            record()
            if failed:
                raise RecipeError("\n".join(failed))
    except RecipeError as err:
        print(f"p2bot recipe: error: {err}", file=sys.stderr)
        return 1
    written = write_report(recipe, out, Path(args.config).name, timings, wall, argv)
    if written:
        print(f"\n=== [recipe] report: {written}")
    return 0


def _evaluations(recipe: dict, out: Path, mapping: str, results: str) -> dict[str, Path]:
    """``{"average" (or "policy"), "seed<S>": results file}`` of the evaluation stages of ``mapping``."""
    stages = [s for s in stage_names(recipe) if mapping_of(s) == mapping]
    named = [("average" if rl_seeds(recipe) else "policy", stages[0])] + [(s.split("-")[1], s) for s in stages[1:]]
    return {name: eval_dir(out, st) / results for name, st in named}


def write_report(recipe: dict, out: Path, title: str, timings: dict, wall: dict,
                 argv: list[str] | None = None) -> Path | None:
    """The recipe's ``report.md`` and ``recipe_results.json`` (``launch.recipe_report``) from its stages' outputs."""
    from launch.recipe_report import write_report as write

    runs = {stage.replace("rl-", ""): rl_dir(out, stage) / "metrics.jsonl"
            for stage in stage_names(recipe) if command_of(stage) == "rl"}
    return write(out, title, timings, wall, selfplay=_evaluations(recipe, out, "eval", "selfplay_results.json"),
                 gold=_evaluations(recipe, out, "gold", "eval_results.json"), runs=runs,
                 per_seed=bool(rl_seeds(recipe)), start=int((recipe.get("rl") or {}).get("curriculum_steps", 0)),
                 provenance=run_provenance("p2bot recipe", argv, recipe))
