"""``p2bot eval``: F1, Hits@1 (NUP head and LM likelihood) and perplexity of a Transmitter on a data set.

Hits@1 ranks the gold response among ``num_candidates`` (the data's own candidates, else responses of other
dialogues drawn with ``seed``). Perplexity is over the gold response tokens (incl. the end marker) at the
model's own tokenizer level. Writes ``eval_results.json`` and the resolved config to ``output_dir``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep import DataFormatError
from launch.commands.sft import load_dialogues
from launch.config_io import parse_configs, save_resolved_config
from models.evaluation import build_eval_examples, evaluate_transmitter
from models.prompt import PromptFormatter
from models.transmitter import Transmitter

RESULTS_FILE = "eval_results.json"


@dataclass
class EvalConfig:
    model: str = field(default="embedded", metadata={"help": "Transmitter: 'embedded', a hub id or a local path"})
    data: str = field(default="", metadata={"help": "dialogues (ParlAI txt, SPC CSV, JSONL); '' = the sample set"})
    data_format: str | None = field(default=None, metadata={"help": "force a reader format (default: inferred)"})
    max_dialogues: int = field(default=0, metadata={"help": "evaluate the first N dialogues (0 = all)"})
    skip_dialogues: int = field(default=0, metadata={"help": "skip the first N dialogues"})
    examples_per_dialogue: int = field(default=0, metadata={"help": "turns per dialogue, drawn with seed (0 = all)"})
    num_candidates: int = field(default=20, metadata={"help": "Hits@1 candidates (gold + distractors)"})
    metrics: str = field(default="f1,hits,ppl", metadata={"help": "comma-separated subset of f1, hits, ppl"})
    max_history_tokens: int = field(default=256, metadata={"help": "history token budget (left-truncated)"})
    max_new_tokens: int = field(default=32, metadata={"help": "generated response length cap"})
    batch_size: int = field(default=16, metadata={"help": "contexts per generation batch"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy / beam search"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    num_beams: int = field(default=1, metadata={"help": "beam search width"})
    seed: int = field(default=0, metadata={"help": "seed of distractor / turn sampling and of generation"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where eval_results.json is written"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})

    def __post_init__(self):
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("num_beams > 1 and do_sample are exclusive: pick beam search or sampling")
        if self.num_candidates < 2:
            raise ValueError(f"num_candidates must be >= 2, got {self.num_candidates}")

    def metric_list(self) -> list[str]:
        return [m.strip() for m in self.metrics.split(",") if m.strip()]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (cfg,) = parse_configs((EvalConfig,), argv, prog="p2bot eval", description=__doc__)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    save_resolved_config(out, cfg)
    try:
        dialogues = load_dialogues(cfg.data, cfg.data_format, cfg.skip_dialogues, cfg.max_dialogues)
        examples = build_eval_examples(dialogues, cfg.num_candidates, cfg.seed, cfg.examples_per_dialogue)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        print(f"p2bot eval: error: {err}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    model = Transmitter.from_pretrained(cfg.model)
    load_s = time.perf_counter() - start
    formatter = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)
    print(f"p2bot eval: {cfg.model} on {len(dialogues)} dialogues, {len(examples)} examples (model loaded in "
          f"{load_s:.1f}s)", file=sys.stderr)
    sampling = dict(do_sample=cfg.do_sample, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                    num_beams=cfg.num_beams)
    result = evaluate_transmitter(model, examples, formatter, metrics=cfg.metric_list(), batch_size=cfg.batch_size,
                                  max_new_tokens=cfg.max_new_tokens, **sampling)
    payload = dict(model=cfg.model, data=cfg.data or "sample", num_dialogues=len(dialogues), **result.to_dict())
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out / RESULTS_FILE)
    print(result.table())
    print(f"results: {out / RESULTS_FILE}")
    return 0
