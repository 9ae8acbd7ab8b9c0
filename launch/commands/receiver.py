"""``p2bot receiver``: train the persona Receiver by weak supervision and compare it with two baselines.

Reads dialogues, splits them by dialogue into train / held-out validation (unless ``--eval_data`` is given),
builds receiver rows (1 negative persona per training row, ``--num_eval_negatives`` per validation row),
trains, and prints Hits@1 / MRR of the true persona for the lexical-overlap baseline, the untrained encoder
and the trained Receiver. Writes ``receiver_metrics.json``, the resolved config and the model (``model/``).
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from data_prep import DataFormatError, build_receiver_examples
from data_prep.files.atomic import write_text_atomic
from launch.config_io import parse_configs, save_resolved_config
from launch.errors import option, read_data, require_inputs
from models.loading.pretrained import resolve_device
from models.networks.receiver import Receiver
from models.scoring.lexical import LexicalScorer
from models.scoring.metrics import example_ranks, paired_bootstrap, ranking_metrics
from models.training.receiver_training import ReceiverTrainer, ReceiverTrainingConfig, receiver_score_fn, score_ranking

METRICS_FILE = "receiver_metrics.json"


@dataclass
class ReceiverDataConfig:
    data: str = field(default="sample", metadata={"help": "dialogue file to train on ('sample' = the shipped sample set)"})
    eval_data: str | None = field(default=None, metadata={"help": "validation dialogues (default: hold out eval_fraction of data)"})
    eval_fraction: float = field(default=0.2, metadata={"help": "share of data dialogues held out when eval_data is unset"})
    holdout_first: int = field(default=0, metadata={"help": "hold out the first N dialogues of data for validation "
                                                            "instead of a random eval_fraction (0 = off)"})
    max_dialogues: int = field(default=0, metadata={"help": "use only the first N dialogues of data (0 = all)"})
    num_train_negatives: int = field(default=1, metadata={"help": "negative personas per training row"})
    num_eval_negatives: int = field(default=19, metadata={"help": "negative personas per validation row (19-31 usual)"})
    max_eval_examples: int = field(default=0, metadata={"help": "evaluate on at most N validation rows (0 = all)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the split and the negative sampling"})
    skip_baselines: bool = field(default=False, metadata={"help": "do not evaluate the lexical and untrained baselines"})

    def __post_init__(self):
        if self.holdout_first < 0:
            raise ValueError(f"holdout_first must be >= 0, got {self.holdout_first}")
        if self.eval_data is None and not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1) when eval_data is unset, got {self.eval_fraction}")
        if self.num_train_negatives < 1 or self.num_eval_negatives < 1:
            raise ValueError("num_train_negatives and num_eval_negatives must be >= 1")


def _read(path: str, flag: str):
    with option(flag):
        return read_data(path).dialogues


def split_dialogues(data: ReceiverDataConfig):
    """(train, eval) dialogues: eval_data when given, else a seeded by-dialogue hold-out of data."""
    train = _read(data.data, "--data")
    if data.max_dialogues:
        train = train[: data.max_dialogues]
    if data.eval_data:
        return train, _read(data.eval_data, "--eval_data")
    if data.holdout_first:
        if data.holdout_first >= len(train):
            raise ValueError(f"holdout_first={data.holdout_first} leaves no training dialogue ({len(train)} read)")
        return train[data.holdout_first:], train[: data.holdout_first]
    order = list(range(len(train)))
    random.Random(data.data_seed).shuffle(order)
    n_eval = max(1, round(data.eval_fraction * len(train)))
    return [train[i] for i in sorted(order[n_eval:])], [train[i] for i in sorted(order[:n_eval])]


def format_table(results: dict[str, dict], gains: dict[str, dict] | None = None) -> str:
    lines = [f"{'scorer':<22} {'Hits@1':>7} {'MRR':>7}"]
    lines += [f"{name:<22} {m['hits@1']:>7.3f} {m['mrr']:>7.3f}" for name, m in results.items()]
    for name, g in (gains or {}).items():
        lines.append(f"trained − {name}: " + ", ".join(
            f"{k} {v['diff']:+.4f} (95% CI {v['low']:+.4f} .. {v['high']:+.4f})" for k, v in g.items()))
    return "\n".join(lines)


def paired_gains(ranks: dict[str, tuple], of: str = "trained receiver") -> dict[str, dict]:
    """Per baseline, the trained Receiver's Hits@1 and MRR gain over it on the same rows, with a bootstrap CI."""
    return {name: {metric: paired_bootstrap(ranks[of][k], r[k]) for k, metric in enumerate(("hits@1", "mrr"))}
            for name, r in ranks.items() if name != of}


CONFIG_TYPES = (ReceiverDataConfig, ReceiverTrainingConfig)  # what main parses; the docs build its parser too


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    data, cfg = parse_configs(CONFIG_TYPES, argv, prog="p2bot receiver",
                              description=__doc__)
    require_inputs(receivers={"--model_name_or_path": cfg.model_name_or_path})
    out = Path(cfg.output_dir)
    save_resolved_config(out, data, cfg)
    try:
        train_dialogues, eval_dialogues = split_dialogues(data)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        print(f"p2bot receiver: error: {err}", file=sys.stderr)
        return 1
    try:
        train_rows = build_receiver_examples(train_dialogues, data.num_train_negatives, seed=data.data_seed).to_list()
        # a small validation set draws its distractor personas from the training dialogues as well
        extra = train_dialogues if 2 * (len(eval_dialogues) - 1) < data.num_eval_negatives else ()
        eval_rows = build_receiver_examples(eval_dialogues, data.num_eval_negatives, seed=data.data_seed + 1,
                                            distractor_dialogues=extra).to_list()
    except ValueError as err:  # too few other dialogues to draw negatives from
        print(f"p2bot receiver: error: {err} (num_train_negatives={data.num_train_negatives}, num_eval_negatives="
              f"{data.num_eval_negatives}, {len(train_dialogues)} train / {len(eval_dialogues)} validation dialogues)",
              file=sys.stderr)
        return 1
    if data.max_eval_examples:
        eval_rows = random.Random(data.data_seed).sample(eval_rows, min(data.max_eval_examples, len(eval_rows)))
    print(f"{len(train_dialogues)} train dialogues ({len(train_rows)} rows), {len(eval_dialogues)} validation "
          f"dialogues ({len(eval_rows)} rows, 1 + {data.num_eval_negatives} candidates)")

    scores: dict[str, tuple] = {}  # scorer → (pos (N,), neg (N, K)) on the same validation rows
    if not data.skip_baselines:
        scores["lexical overlap"] = score_ranking(LexicalScorer().score, eval_rows)
        untrained = Receiver.from_pretrained(cfg.model_name_or_path, cfg.temperature, max_length=cfg.max_length,
                                             device="cpu" if cfg.use_cpu else resolve_device("auto"))
        scores["untrained encoder"] = score_ranking(receiver_score_fn(untrained, cfg.eval_batch_size), eval_rows)
        del untrained
    receiver = Receiver.from_pretrained(cfg.model_name_or_path, cfg.temperature, max_length=cfg.max_length)
    trainer = ReceiverTrainer(receiver, cfg, train_rows, eval_rows)
    run = trainer.train()
    scores["trained receiver"] = trainer.eval_scores
    receiver.card.datasets = [data.data, *([data.eval_data] if data.eval_data else [])]
    trainer.save_model(out / "model")

    if trainer.accelerator.is_main_process:
        results = {name: ranking_metrics(*s) for name, s in scores.items()}
        gains = paired_gains({name: example_ranks(*s) for name, s in scores.items()})
        print(format_table(results, gains))
        report = {"results": results, "trained_minus_baseline": gains,
                  "train_dialogues": len(train_dialogues), "eval_dialogues": len(eval_dialogues),
                  "train_rows": len(train_rows), "eval_rows": len(eval_rows), "steps": run["steps"], "processes": run["processes"],
                  "train_seconds": run["train_seconds"], "model_dir": str(out / "model")}
        write_text_atomic(out / METRICS_FILE, json.dumps(report, indent=2))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.state.destroy_process_group()
    return 0
