"""``p2bot eval`` without ``--selfplay``: F1, Hits@1 and gold-response perplexity of a Transmitter on held-out
turns; with ``--compare``, a second model on the same turns and the paired difference of every metric with
bootstrap intervals over dialogues (``models.scoring.gold_compare``). ``--compare_results`` reads the compare model's
per-turn values from an earlier run with the same settings instead of evaluating it again."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from data_prep.files.atomic import write_text_atomic
from launch.commands.sft import load_dialogues
from launch.errors import option
from launch.provenance import run_provenance
from models.loading.pretrained import resolve_device, resolve_dtype
from models.networks.transmitter import Transmitter
from models.prompting.prompt import PromptFormatter
from models.scoring.gold_compare import compare_gold, gold_comparison_table
from models.scoring.gold_eval import build_eval_examples, evaluate_transmitter

RESULTS_FILE = "eval_results.json"
TABLE_FILE = "eval_table.md"
# what decides the examples and each model's values on them: a reused result must have been run with the same
SETTINGS = ("data", "data_format", "max_dialogues", "skip_dialogues", "examples_per_dialogue", "num_candidates",
            "metrics", "max_history_tokens", "max_new_tokens", "batch_size", "do_sample", "temperature", "top_k",
            "top_p", "num_beams", "seed", "torch_dtype")


def settings_of(cfg) -> dict:
    return {key: getattr(cfg, key) for key in SETTINGS}


def reused_compare(cfg) -> tuple[dict, str]:
    """The ``--compare`` model's result read from ``--compare_results`` (a folder or its results file), checked to
    come from the same settings; and the file it came from."""
    path = Path(cfg.compare_results)
    path = path / RESULTS_FILE if path.is_dir() else path
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"--compare_results {cfg.compare_results}: cannot read {path}: {err}") from err
    differ = sorted(k for k, v in settings_of(cfg).items() if earlier.get("settings", {}).get(k, object()) != v)
    if differ:
        raise ValueError(f"--compare_results {path}: run with other settings ({', '.join(differ)}: "
                         + "; ".join(f"{k} {earlier.get('settings', {}).get(k)!r} there, {getattr(cfg, k)!r} here"
                                     for k in differ) + ")")
    for block in (earlier, earlier.get("compare") or {}):
        if block.get("model") == cfg.compare and block.get("per_example"):
            return block, str(path)
    raise ValueError(f"--compare_results {path}: holds no per-turn values of {cfg.compare!r} (its models: "
                     f"{earlier.get('model')!r}, {(earlier.get('compare') or {}).get('model')!r})")


def _evaluate(name: str, cfg, examples, bar) -> dict:
    with option("--model" if name == cfg.model else "--compare", name):
        model = Transmitter.from_pretrained(name, device=resolve_device(cfg.device),
                                            torch_dtype=resolve_dtype(cfg.torch_dtype))
    formatter = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)
    sampling = dict(do_sample=cfg.do_sample, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                    num_beams=cfg.num_beams)
    result = evaluate_transmitter(model, examples, formatter, metrics=cfg.metric_list(), batch_size=cfg.batch_size,
                                  max_new_tokens=cfg.max_new_tokens, progress=bar.update, **sampling)
    print(f"{name}:\n{result.table()}")
    return dict(model=name, **result.to_dict())


def run_gold_eval(cfg, argv: list[str] | None, out: Path) -> int:
    start = time.perf_counter()
    with option("--data"):
        dialogues = load_dialogues(cfg.data, cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
        examples = build_eval_examples(dialogues, cfg.num_candidates, cfg.seed, cfg.examples_per_dialogue)
    reused, source = reused_compare(cfg) if cfg.compare_results else (None, None)
    names = [cfg.model] + ([cfg.compare] if cfg.compare and reused is None else [])
    print(f"p2bot eval: {', '.join(names)} on {len(dialogues)} dialogues, {len(examples)} examples"
          + (f"; {cfg.compare} read from {source}" if source else ""), file=sys.stderr)
    metrics = cfg.metric_list()
    phases = ("f1" in metrics) + bool({"hits", "ppl"} & set(metrics))  # generation, then scoring
    with tqdm(total=len(names) * phases * len(examples), desc="p2bot eval", unit="example", file=sys.stderr) as bar:
        results = [_evaluate(name, cfg, examples, bar) for name in names]
    payload = dict(data=cfg.data or "sample", num_dialogues=len(dialogues), settings=settings_of(cfg), **results[0])
    if cfg.compare:
        other = reused if reused is not None else results[1]
        payload["compare"] = {**other, **({"read_from": source} if source else {})}
        payload["comparison"] = compare_gold(results[0]["per_example"], other["per_example"],
                                             cfg.bootstrap_samples, cfg.seed)
        table = gold_comparison_table("model", "compare", payload["comparison"])
        write_text_atomic(out / TABLE_FILE, f"model: {cfg.model}; compare: {cfg.compare}\n\n{table}\n")
        print(f"\n{cfg.model} (model) vs {cfg.compare} (compare), paired over {len(set(payload['per_example']['dialogue_id']))} "
              f"dialogues:\n{table}")
    payload["seconds"] = round(time.perf_counter() - start, 1)
    payload["provenance"] = run_provenance("p2bot eval", argv, cfg)
    write_text_atomic(out / RESULTS_FILE, json.dumps(payload, indent=2) + "\n")
    print(f"results: {out / RESULTS_FILE}")
    return 0
