"""Receiver scoring throughput: utterances/s for 1,000 utterances scored against their speakers' personas.

Three ways: batched with an empty persona cache (cold), batched again with the cache filled (warm), and
seed-style (one utterance per call, its persona re-encoded every time, no cache) on a subset.
Hooked into ``p2bot bench receiver`` as ``run(argv)``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from data_prep import build_receiver_examples, read_dialogues, sample_data_path
from data_prep.files.atomic import write_text_atomic
from launch.provenance import run_provenance
from models.loading.pretrained import resolve_device
from models.networks.receiver import Receiver

SPC_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthetic-persona-chat" / "Synthetic-Persona-Chat_valid.csv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2bot bench receiver", description=__doc__)
    p.add_argument("--data", default=None, help="dialogue file (default: shared SPC validation CSV if present, else the sample set)")
    p.add_argument("--model", "--model_name_or_path", dest="model_name_or_path", default="embedded", help="receiver encoder or a saved Receiver")
    p.add_argument("--num_utterances", type=int, default=1000, help="utterances to score")
    p.add_argument("--batch_size", type=int, default=64, help="sentences per encoder call")
    p.add_argument("--seed_style_utterances", type=int, default=100, help="subset for the seed-style loop (0 = skip)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, ...")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--output_dir", default=None, help="also write the result, with its provenance, to OUTPUT_DIR/bench_receiver.json")
    return p


def _seed_style(receiver: Receiver, utterances: list[str], personas: list[list[str]]) -> None:
    """One utterance at a time, persona sentences re-encoded on every call (what the seed did)."""
    for u, persona in zip(utterances, personas):
        receiver.clear_cache()
        receiver.score([u], [persona])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.data or (SPC_VALID if SPC_VALID.is_file() else sample_data_path())
    rows = build_receiver_examples(read_dialogues(path).dialogues, num_negatives=1).to_list()
    rows = (rows * (args.num_utterances // max(len(rows), 1) + 1))[: args.num_utterances]
    utterances, personas = [r["utterance"] for r in rows], [r["persona"] for r in rows]
    receiver = Receiver.from_pretrained(args.model_name_or_path, device=resolve_device(args.device)).eval()

    receiver.clear_cache()
    cold = _timed(lambda: receiver.score(utterances, personas, batch_size=args.batch_size))
    warm = _timed(lambda: receiver.score(utterances, personas, batch_size=args.batch_size))
    result = {
        "data": str(path), "utterances": len(utterances), "distinct_persona_sentences": len({s for p in personas for s in p}),
        "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "cold_seconds": cold, "cold_utt_per_s": len(utterances) / cold,
        "warm_seconds": warm, "warm_utt_per_s": len(utterances) / warm,
    }
    if args.seed_style_utterances:
        n = min(args.seed_style_utterances, len(utterances))
        slow = _timed(lambda: _seed_style(receiver, utterances[:n], personas[:n]))
        result.update(seed_style_utterances=n, seed_style_utt_per_s=n / slow, speedup_cold_vs_seed_style=(len(utterances) / cold) / (n / slow))
    result["provenance"] = run_provenance("p2bot bench receiver", argv, vars(args))
    if args.output_dir:
        write_text_atomic(Path(args.output_dir) / "bench_receiver.json", json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"receiver scoring on {result['data']}: {result['utterances']} utterances, "
          f"{result['distinct_persona_sentences']} distinct persona sentences, {result['threads']} threads")
    print(f"  batched, cold cache : {result['cold_utt_per_s']:8.1f} utterances/s ({cold:.2f} s)")
    print(f"  batched, warm cache : {result['warm_utt_per_s']:8.1f} utterances/s ({warm:.2f} s)")
    if args.seed_style_utterances:
        print(f"  seed-style (1 by 1) : {result['seed_style_utt_per_s']:8.1f} utterances/s "
              f"(on {result['seed_style_utterances']}; batched cold is {result['speedup_cold_vs_seed_style']:.1f}x faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
