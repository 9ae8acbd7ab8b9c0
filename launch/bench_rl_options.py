"""RL options compared on one budget: ``p2bot bench options``.

Every variant (episode layout, advantage estimator, critic or group baseline, partner) runs ``p2bot rl`` from the
same start model with the same base config, seed and number of iterations, each in its own process. Reported per
variant: the reward gain (mean ``objective/scores`` of the last 3 iterations minus the first 3), the KL to the
reference over the last 3, s/iteration, the process's peak resident memory and, with ``--eval_pairs``, the
self-play judges (``p2bot eval --selfplay``: persona perceivability by the untrained encoder and judge PPL, on
held-out pairs, the same pairs and seeds for every variant and for the start model).

Tasks: ``--task p2`` runs a P² config (``--base_config``, e.g. the ``rl`` stage a recipe wrote); ``--task toy`` is the
learning test: a tiny random policy peaked on 16 tokens, built here, rewarded for the letter "e" on the sample
persona pairs (seconds per iteration, no judges: a random policy does not speak a language).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data_prep.files.atomic import write_text_atomic

VARIANTS: dict[str, list[str]] = {
    "ppo (turn, gae, value head)": ["--episode_layout", "turn"],
    "ppo, speaker episodes": ["--episode_layout", "speaker"],
    "ppo, speaker, episode_gae": ["--episode_layout", "speaker", "--advantage_estimator", "episode_gae"],
    "ppo, speaker, turn_gae": ["--episode_layout", "speaker", "--advantage_estimator", "turn_gae"],
    "ppo, separate value model": ["--value_model_name_or_path", "{start}"],
    "reinforce (seed)": ["--algo", "reinforce", "--num_ppo_epochs", "1"],
    "rloo": ["--algo", "rloo"],
    "grpo": ["--algo", "grpo"],
    "partner frozen": ["--partner", "frozen"],
    "partner lagged": ["--partner", "lagged", "--partner_sync_steps", "5"],
}


@dataclass
class BenchOptionsConfig:
    task: str = field(default="toy", metadata={"help": "toy (the learning test on a tiny policy) or p2 (--config)"})
    base_config: str | None = field(default=None, metadata={"help": "p2: the base p2bot rl YAML"})
    start_model: str | None = field(default=None, metadata={"help": "p2: the start policy (default: the config's)"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": "names of VARIANTS to run"})
    max_steps: int = field(default=12, metadata={"help": "iterations per variant"})
    eval_pairs: int = field(default=0, metadata={"help": "p2: held-out pairs for the self-play judges (0: no judges)"})
    eval_args: list[str] = field(default_factory=list, metadata={"help": "p2: extra p2bot eval --selfplay options"})
    output_dir: str = field(default="runs/bench_options", metadata={"help": "runs and bench_options.json go here"})
    seed: int = field(default=0, metadata={"help": "seed of every run"})

    def __post_init__(self):
        if self.task not in ("toy", "p2"):
            raise ValueError(f"task={self.task!r}: expected toy or p2")
        if self.task == "p2" and not self.base_config:
            raise ValueError("task=p2 needs --base_config (a p2bot rl YAML)")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"variants: unknown {unknown}; choose from {list(VARIANTS)}")
        if self.max_steps < 6:
            raise ValueError("max_steps must be >= 6 (the gain compares the first and last 3 iterations)")


def _toy_setup(out: Path) -> tuple[str, list[str]]:
    """The learning-test task: a peaked tiny policy saved under ``out`` and the rl options that go with it."""
    import torch
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    from models.loading.embedded import embedded_policy_path

    path = out / "toy_policy"
    if not (path / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(embedded_policy_path())
        torch.manual_seed(0)
        active = torch.randperm(len(tok))[:16]
        cfg = PhiConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model = PhiForCausalLM(cfg)
        with torch.no_grad():  # almost all mass on 16 tokens: "say more e" is learnable in a few CPU minutes
            model.lm_head.bias.fill_(-12.0)
            model.lm_head.bias[active] = 0.0
        model.save_pretrained(path)
        tok.save_pretrained(path)
    reward = str(Path(__file__).parent / "examples" / "toy_rewards.py") + ":letter_rate"
    return str(path), ["--reward_funcs", reward, "--pairs_per_step", "2", "--rollouts_per_pair", "2",
                       "--response_length", "8", "--max_exchanges", "2", "--min_exchanges", "2",
                       "--learning_rate", "2e-2", "--num_ppo_epochs", "2", "--max_history_tokens", "64"]


def _peak_rss_of(proc: subprocess.Popen, peak: list[float]) -> None:
    import psutil

    p = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak[0] = max(peak[0], rss / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)


def _run(cmd: list[str], log: Path) -> float:
    """Run a p2bot command in a child process; returns its peak RSS in MB (child included)."""
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false")
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "launch.cli", *cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
        peak = [0.0]
        watcher = threading.Thread(target=_peak_rss_of, args=(proc, peak), daemon=True)
        watcher.start()
        rc = proc.wait()
        watcher.join()
    if rc != 0:
        raise SystemExit(f"p2bot bench options: {' '.join(cmd[:2])} failed (exit {rc}); see {log}")
    return peak[0]


def _summarise(run_dir: Path) -> dict:
    from launch.report import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    mean = lambda key, part: sum(r[key] for r in part) / len(part)  # noqa: E731
    return {"reward_gain": mean("objective/scores", rows[-3:]) - mean("objective/scores", rows[:3]),
            "kl": mean("objective/kl", rows[-3:]), "s_per_iteration": mean("time/step_s", rows[1:]),
            "iterations": len(rows)}


def _judge(model: str, cfg: BenchOptionsConfig, out: Path, name: str) -> dict:
    eval_dir = out / "eval" / name
    _run(["eval", "--selfplay", "--model", model, "--pairs", str(cfg.eval_pairs), "--seed", str(cfg.seed),
          "--output_dir", str(eval_dir), *cfg.eval_args], out / "logs" / f"eval_{name}.log")
    s = json.loads((eval_dir / "selfplay_results.json").read_text())["summaries"]
    summary = next(iter(s.values()))
    return {k: summary[k] for k in ("perceive_hits1", "judge_ppl", "copy_rate", "echo_rate") if k in summary}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


CONFIG_TYPES = (BenchOptionsConfig,)  # what run parses; the docs build its parser from this


def run(argv: list[str] | None = None) -> int:
    from launch.config_io import parse_configs, save_resolved_config
    from launch.provenance import run_provenance

    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot bench options", description=__doc__)
    out = Path(cfg.output_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, cfg)
    if cfg.task == "toy":
        start, base = _toy_setup(out)
    else:
        base = ["--config", cfg.base_config]
        start = cfg.start_model or yaml.safe_load(Path(cfg.base_config).read_text()).get("model_name_or_path", "embedded")
    base += ["--model_name_or_path", start]
    results: dict = {"task": cfg.task, "start_model": start, "max_steps": cfg.max_steps, "variants": {}}
    if cfg.task == "p2" and cfg.eval_pairs:
        results["start"] = _judge(start, cfg, out, "start")
    for name in cfg.variants:
        run_dir = out / "runs" / _slug(name)
        args = [a.replace("{start}", start) for a in VARIANTS[name]]
        cmd = ["rl", *base, *args, "--max_steps", str(cfg.max_steps), "--save_steps", "0", "--seed", str(cfg.seed),
               "--output_dir", str(run_dir), "--disable_tqdm", "true", "--sample_log_steps", "0"]
        peak = _run(cmd, out / "logs" / f"{_slug(name)}.log")
        row = {**_summarise(run_dir), "peak_rss_mb": peak}
        if cfg.task == "p2" and cfg.eval_pairs:
            row.update(_judge(str(run_dir / f"checkpoint-{cfg.max_steps}" / "policy"), cfg, out, _slug(name)))
        results["variants"][name] = row
        results["provenance"] = run_provenance("p2bot bench options", argv, cfg)
        write_text_atomic(out / "bench_options.json", json.dumps(results, indent=2) + "\n")
        print(f"{name}: {row}", flush=True)
    print(table(results))
    return 0


def table(results: dict) -> str:
    """The comparison as a Markdown table."""
    judged = "start" in results
    head = "| variant | reward gain | KL | s/iteration | peak RSS MB |" + (" Hits@1 (judge) | judge PPL | copy rate |" if judged else "")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    rows = ([("start model", results["start"])] if judged else []) + list(results["variants"].items())
    for name, r in rows:
        cells = [f"{r['reward_gain']:+.3f}" if "reward_gain" in r else "-", f"{r['kl']:.2f}" if "kl" in r else "-",
                 f"{r['s_per_iteration']:.1f}" if "s_per_iteration" in r else "-",
                 f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-"]
        if judged:
            cells += [f"{r['perceive_hits1']['value']:.3f}", f"{r['judge_ppl']['value']:.2f}", f"{r['copy_rate']['value']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
