"""``p2bot bench <name> [options]``: throughput benchmarks against seed-style baselines.

``eval``: F1-evaluation throughput (examples/s) of our batched, left-padded, KV-cached generation against a
seed-style loop (one example at a time, no KV cache: the whole sequence is re-run for every new token), on the
same examples in the same run, with the peak resident memory of each phase.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from dataclasses import dataclass, field

import torch

from data_prep.files.atomic import write_text_atomic

# name -> "module:function"; each function takes argv (list[str]) and returns an exit code
BENCHMARKS: dict[str, str] = {
    "eval": "launch.commands.bench:bench_eval",
    "receiver": "launch.bench_receiver:run",
    "selfplay": "launch.bench_selfplay:run",
    "options": "launch.bench_rl_options:run",
    "profile": "launch.bench_profile:run",
    "profile-compare": "launch.bench_profile_compare:run",
    "anchor": "launch.bench_anchor:run",
}
SUBCOMMANDS = BENCHMARKS  # the docs tools (launch.docs.parsers) find every benchmark's parser through this


def main(argv: list[str] | None = None) -> int:
    from launch.cli import dispatch

    return dispatch("p2bot bench", BENCHMARKS, argv, __doc__)


# --- memory ---


class PeakRSS:
    """Peak resident set size (bytes) of this process while the block runs, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:  # pragma: no cover - psutil comes with accelerate
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


# --- eval benchmark ---


@dataclass
class BenchEvalConfig:
    model: str = field(default="embedded", metadata={"help": "Transmitter: 'embedded', a hub id or a local path"})
    data: str = field(default="", metadata={"help": "dialogues to draw examples from ('' = the sample set)"})
    num_examples: int = field(default=8, metadata={"help": "examples (one turn of each of the first N dialogues)"})
    max_history_tokens: int = field(default=256, metadata={"help": "history token budget"})
    max_new_tokens: int = field(default=32, metadata={"help": "generated tokens per example (both methods)"})
    batch_size: int = field(default=16, metadata={"help": "our generation batch size"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, ..."})
    torch_dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16 (default: the checkpoint's)"})
    output_dir: str = field(default="runs/bench_eval", metadata={"help": "where bench_eval.json is written"})
    seed: int = field(default=0, metadata={"help": "seed of turn sampling"})

    def __post_init__(self):
        if self.num_examples < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("num_examples, max_new_tokens and batch_size must be >= 1")


@torch.no_grad()
def seed_style_generate(transmitter, context: list[int], max_new_tokens: int, stops: list[int],
                        temperature: float | None = None, generator: torch.Generator | None = None) -> list[int]:
    """The seed's decoding: one sequence, no KV cache (the full sequence is re-run for every token); greedy, or
    sampled at ``temperature`` with ``generator``."""
    seq = list(context)
    device = transmitter.device
    for _ in range(max_new_tokens):
        logits = transmitter.lm(torch.tensor([seq], device=device), use_cache=False).logits[0, -1].float()
        if temperature is None:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator))
        seq.append(nxt)
        if nxt in stops:
            break
    return seq[len(context):]


CONFIG_TYPES = (BenchEvalConfig,)  # the eval benchmark's options (bench_eval parses them; the dispatcher has none)


def bench_eval(argv: list[str] | None = None) -> int:
    from data_prep import read_dialogues, resolve_data_path
    from launch.config_io import start_command
    from launch.provenance import run_provenance
    from models.generation.sampling import stop_token_ids
    from models.networks.transmitter import Transmitter
    from models.prompting.prompt import PromptFormatter
    from models.scoring.gold_eval import build_eval_examples, f1_of, generate_responses

    cfg, out = start_command(*CONFIG_TYPES, argv, prog="p2bot bench eval", description=__doc__)
    dialogues = read_dialogues(resolve_data_path(cfg.data)).dialogues
    examples = build_eval_examples(dialogues[: cfg.num_examples], num_candidates=2, seed=cfg.seed,
                                   examples_per_dialogue=1)[: cfg.num_examples]
    from models.loading.pretrained import resolve_device, resolve_dtype

    model = Transmitter.from_pretrained(cfg.model, device=resolve_device(cfg.device),
                                        torch_dtype=resolve_dtype(cfg.torch_dtype)).eval()
    fmt = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)
    stops = stop_token_ids(model.tokenizer)
    contexts = [fmt.encode_context(ex["persona"], ex["history"]) for ex in examples]
    generate_responses(model, fmt, examples[:1], max_new_tokens=2)  # warm-up (first-call overheads)
    seed_style_generate(model, contexts[0], 2, stops)
    rss_start = PeakRSS.current()

    with PeakRSS() as ours_mem:
        start = time.perf_counter()
        ours = generate_responses(model, fmt, examples, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens)
        ours_f1 = f1_of(ours, examples)
        ours_s = time.perf_counter() - start
    with PeakRSS() as seed_mem:
        start = time.perf_counter()
        seed = [fmt.decode_response(seed_style_generate(model, c, cfg.max_new_tokens, stops)) for c in contexts]
        seed_f1 = f1_of(seed, examples)
        seed_s = time.perf_counter() - start

    n = len(examples)
    report = dict(
        model=cfg.model, num_examples=n, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
        torch_threads=torch.get_num_threads(), mean_context_tokens=sum(map(len, contexts)) / n,
        ours=dict(seconds=ours_s, examples_per_s=n / ours_s, f1=ours_f1, peak_rss_mb=ours_mem.peak / 2**20),
        seed_style=dict(seconds=seed_s, examples_per_s=n / seed_s, f1=seed_f1, peak_rss_mb=seed_mem.peak / 2**20),
        speedup=seed_s / ours_s, same_outputs=sum(a == b for a, b in zip(ours, seed)) / n,
        rss_before_mb=rss_start / 2**20,
        process_max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        provenance=run_provenance("p2bot bench eval", argv, cfg),
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench_eval.json", json.dumps(report, indent=2) + "\n")
    print(f"F1-eval throughput, {n} examples, {cfg.max_new_tokens} new tokens, {report['torch_threads']} threads, "
          f"mean context {report['mean_context_tokens']:.0f} tokens")
    print(f"{'method':<34} {'examples/s':>10} {'seconds':>8} {'F1':>6} {'peak RSS MB':>11}")
    for name, key in (("ours (batched, KV cache)", "ours"), ("seed-style (1 by 1, no KV cache)", "seed_style")):
        r = report[key]
        print(f"{name:<34} {r['examples_per_s']:>10.3f} {r['seconds']:>8.1f} {100 * r['f1']:>6.2f} "
              f"{r['peak_rss_mb']:>11.0f}")
    print(f"speedup: {report['speedup']:.1f}x   identical outputs: {100 * report['same_outputs']:.0f}%")
    print(f"results: {out / 'bench_eval.json'}")
    return 0
