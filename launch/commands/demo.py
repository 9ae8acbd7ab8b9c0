"""``p2bot demo``: the whole pipeline on the embedded defaults and the shipped sample data.

Stages (each is the corresponding ``p2bot`` command, run in this process):
  1. sft       fine-tune SmolLM2-135M-Instruct (LM + next-utterance head, value head added for PPO)
  2. receiver  train the persona Receiver (all-MiniLM-L6-v2) by weak supervision
  3. eval      F1 / Hits@1 / perplexity of the SFT model on held-out sample dialogues
  4. rl        PPO self-play with the P² rewards (persona from the trained Receiver, fluency, coherence, repetition)
  5. eval      the same evaluation on the RL policy, then self-play of RL vs SFT on the held-out persona pairs,
               judged by frozen models RL never optimised (``p2bot eval --selfplay --compare``)
  6. report    metrics.json, PNG plots of reward components / KL / entropy, sample dialogues before and after RL,
               the self-play judges' table (selfplay_table.md)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import set_seed

from data_prep import build_selfplay_pairs, read_dialogues, sample_data_path
from launch.config_io import parse_configs, save_resolved_config
from launch.report import markdown_table, plot_metrics, read_metrics


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "run folder; the report goes to <output_dir>/report"})
    policy: str = field(default="embedded", metadata={"help": "causal LM to fine-tune: 'embedded' (SmolLM2-135M-Instruct), "
                                                             "a hub id or a local path"})
    receiver: str = field(default="embedded", metadata={"help": "Receiver encoder: 'embedded' (all-MiniLM-L6-v2), a hub "
                                                               "id or a local path"})
    heldout_dialogues: int = field(default=8, metadata={"help": "sample dialogues kept out of SFT for evaluation"})
    sft_steps: int = field(default=60, metadata={"help": "SFT optimizer steps (batch 4); with 12 the 135M policy still "
                                                         "echoes its partner's line under greedy decoding"})
    max_history_tokens: int = field(default=96, metadata={"help": "history token budget in every stage (CPU-sized)"})
    eval_examples_per_dialogue: int = field(default=1, metadata={"help": "evaluated turns per held-out dialogue"})
    receiver_steps: int = field(default=20, metadata={"help": "Receiver optimizer steps"})
    rl_steps: int = field(default=12, metadata={"help": "PPO iterations"})
    selfplay_dialogues_per_pair: int = field(default=2, metadata={"help": "self-play evaluation: dialogues per held-out pair"})
    rl_pairs_per_step: int = field(default=2, metadata={"help": "persona pairs per PPO iteration"})
    rl_rollouts_per_pair: int = field(default=2, metadata={"help": "self-play dialogues per pair"})
    rl_max_exchanges: int = field(default=1, metadata={"help": "curriculum end: A+B exchanges per dialogue (1 = no curriculum)"})
    response_length: int = field(default=24, metadata={"help": "max tokens per self-play utterance"})
    sample_dialogues: int = field(default=2, metadata={"help": "held-out persona pairs shown before/after RL"})
    sample_exchanges: int = field(default=2, metadata={"help": "A+B exchanges of each before/after sample dialogue"})
    seed: int = field(default=0, metadata={"help": "random seed of every stage"})
    device: str = field(default="auto", metadata={"help": "where evaluation and samples run: auto (CUDA when available), "
                                                          "cpu, cuda, ... (training stages use accelerate's device)"})

    def __post_init__(self):
        counts = ("heldout_dialogues", "sft_steps", "selfplay_dialogues_per_pair", "receiver_steps", "rl_steps", "rl_pairs_per_step",
                  "rl_rollouts_per_pair", "rl_max_exchanges", "response_length", "sample_dialogues", "sample_exchanges",
                  "eval_examples_per_dialogue", "max_history_tokens")
        bad = [name for name in counts if getattr(self, name) < 1]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be >= 1")


def _stage(name: str, module: str, argv: list[str], timings: dict[str, float]) -> None:
    import importlib

    print(f"\n=== [demo] {name}: p2bot {module.rsplit('.', 1)[-1]} {' '.join(argv)}", flush=True)
    start = time.time()
    rc = importlib.import_module(module).main(argv)
    timings[name] = round(time.time() - start, 1)
    if rc not in (0, None):
        raise SystemExit(f"p2bot demo: stage {name!r} failed with exit code {rc}")


def _eval_argv(model: Path, out: Path, cfg: DemoConfig) -> list[str]:
    return ["--model", str(model), "--max_dialogues", str(cfg.heldout_dialogues), "--output_dir", str(out),
            "--max_new_tokens", "24", "--seed", str(cfg.seed), "--max_history_tokens", str(cfg.max_history_tokens),
            "--examples_per_dialogue", str(cfg.eval_examples_per_dialogue), "--device", cfg.device]


def receiver_argv(cfg: DemoConfig, rcv_dir: Path) -> list[str]:
    """``p2bot receiver`` arguments: the first ``heldout_dialogues`` sample dialogues (the pairs the demo's
    evaluations judge) are held out of training, as in SFT (``--skip_dialogues``) and RL."""
    return ["--data", "sample", "--holdout_first", str(cfg.heldout_dialogues), "--model_name_or_path", cfg.receiver,
            "--output_dir", str(rcv_dir), "--max_steps", str(cfg.receiver_steps), "--per_device_train_batch_size", "16",
            "--learning_rate", "5e-5", "--num_eval_negatives", "19", "--save_steps", "0", "--seed", str(cfg.seed)]


def _latest_policy(rl_dir: Path) -> Path:
    checkpoints = sorted(rl_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    if not checkpoints:
        raise SystemExit(f"p2bot demo: no checkpoint in {rl_dir}")
    return checkpoints[-1] / "policy"


def sample_dialogues(model: Path, pairs: list[dict], cfg: DemoConfig) -> list[dict]:
    """Greedy self-play between two copies of ``model`` on fixed persona pairs (comparable before/after)."""
    from launch.commands.chat import Agent, ChatConfig
    from models.loading.pretrained import resolve_device
    from models.networks.transmitter import Transmitter
    from models.prompting.prompt import PromptFormatter

    transmitter = Transmitter.from_pretrained(model, device=resolve_device(cfg.device)).eval()
    chat_cfg = ChatConfig(do_sample=False, max_new_tokens=cfg.response_length)
    agent = Agent(transmitter, PromptFormatter(transmitter.tokenizer, cfg.max_history_tokens), chat_cfg)
    out = []
    for pair in pairs:
        history: list[str] = []
        for turn in range(2 * cfg.sample_exchanges):
            history.append(agent.reply(pair["persona_a"] if turn % 2 == 0 else pair["persona_b"], history))
        out.append({"persona_a": pair["persona_a"], "persona_b": pair["persona_b"], "turns": history})
    return out


def _write_samples(path: Path, before: list[dict], after: list[dict]) -> None:
    lines = []
    for i, (b, a) in enumerate(zip(before, after)):
        lines += [f"## Pair {i + 1}", "A persona: " + " ".join(b["persona_a"]), "B persona: " + " ".join(b["persona_b"]), ""]
        for title, d in (("Before RL (SFT)", b), ("After RL (PPO)", a)):
            lines.append(f"### {title}")
            lines += [f"{'AB'[t % 2]}: {u}" for t, u in enumerate(d["turns"])] + [""]
    path.write_text("\n".join(lines))


def _curve_summary(rows: list[dict], names: list[str], window: int = 5) -> dict[str, dict[str, float]]:
    out = {}
    for name in names:
        values = [r[name] for r in rows if isinstance(r.get(name), (int, float))]
        if values:
            k = min(window, len(values))
            out[name] = {"first": sum(values[:k]) / k, "last": sum(values[-k:]) / k}
    return out


CONFIG_TYPES = (DemoConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot demo", description=__doc__)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(cfg.output_dir)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, cfg)
    timings: dict[str, float] = {}
    started = time.time()
    sft_dir, rcv_dir, rl_dir = out / "sft", out / "receiver", out / "rl"
    seed = ["--seed", str(cfg.seed)]

    # --- 1. SFT (the first `heldout_dialogues` sample dialogues are kept for evaluation) ---
    _stage("sft", "launch.commands.sft", [
        "--model", cfg.policy, "--output_dir", str(sft_dir), "--skip_dialogues", str(cfg.heldout_dialogues), "--max_steps", str(cfg.sft_steps),
        "--per_device_train_batch_size", "4", "--learning_rate", "5e-5", "--warmup_steps", "5", "--logging_steps", "5",
        "--save_strategy", "no", "--report_to", "none", "--with_value_head", "true",
        "--max_history_tokens", str(cfg.max_history_tokens), *seed], timings)
    sft_model = sft_dir / "model"

    # --- 2. Receiver (trained on the dialogues SFT and RL train on; the held-out ones are its validation set) ---
    _stage("receiver", "launch.commands.receiver", receiver_argv(cfg, rcv_dir), timings)

    # --- 3. evaluation before RL ---
    _stage("eval_before_rl", "launch.commands.eval", _eval_argv(sft_model, out / "eval_before_rl", cfg), timings)
    pairs = list(build_selfplay_pairs(read_dialogues(sample_data_path()).dialogues[: cfg.heldout_dialogues], seed=cfg.seed))
    pairs = pairs[: cfg.sample_dialogues]
    set_seed(cfg.seed)
    before = sample_dialogues(sft_model, pairs, cfg)

    # --- 4. PPO self-play ---
    _stage("rl", "launch.commands.rl", [
        "--model_name_or_path", str(sft_model), "--receiver_name_or_path", str(rcv_dir / "model"),
        "--output_dir", str(rl_dir), "--max_steps", str(cfg.rl_steps), "--save_steps", "0",
        "--skip_dialogues", str(cfg.heldout_dialogues),
        "--pairs_per_step", str(cfg.rl_pairs_per_step), "--rollouts_per_pair", str(cfg.rl_rollouts_per_pair),
        "--min_exchanges", "1", "--max_exchanges", str(cfg.rl_max_exchanges), "--curriculum_steps", str(max(1, cfg.rl_steps // 2)),
        "--response_length", str(cfg.response_length), "--learning_rate", "1e-5", "--num_ppo_epochs", "2",
        "--sample_log_steps", "5", "--max_history_tokens", str(cfg.max_history_tokens), *seed], timings)
    rl_model = _latest_policy(rl_dir)

    # --- 5. evaluation after RL ---
    _stage("eval_after_rl", "launch.commands.eval", _eval_argv(rl_model, out / "eval_after_rl", cfg), timings)
    set_seed(cfg.seed)
    after = sample_dialogues(rl_model, pairs, cfg)
    _stage("selfplay_eval", "launch.commands.eval", [
        "--selfplay", "--model", str(rl_model), "--compare", str(sft_model), "--receiver", str(rcv_dir / "model"),
        "--judge_encoder", cfg.receiver, "--judge_lm", cfg.policy, "--max_dialogues", str(cfg.heldout_dialogues),
        "--pairs", "0", "--dialogues_per_pair", str(cfg.selfplay_dialogues_per_pair), "--exchanges",
        str(cfg.sample_exchanges), "--max_new_tokens", str(cfg.response_length), "--max_history_tokens",
        str(cfg.max_history_tokens), "--output_dir", str(out / "selfplay_eval"), "--device", cfg.device, *seed], timings)

    # --- 6. report ---
    rows = read_metrics(rl_dir / "metrics.jsonl")
    plots = plot_metrics(rows, report)
    shutil.copy(rl_dir / "metrics.jsonl", report / "rl_metrics.jsonl")
    _write_samples(report / "samples_before_after_rl.md", before, after)
    evals = {name: json.loads((out / name / "eval_results.json").read_text()) for name in ("eval_before_rl", "eval_after_rl")}
    receiver = json.loads((rcv_dir / "receiver_metrics.json").read_text())
    selfplay = json.loads((out / "selfplay_eval" / "selfplay_results.json").read_text())
    shutil.copy(out / "selfplay_eval" / "selfplay_table.md", report / "selfplay_table.md")
    curves = _curve_summary(rows, sorted({k for r in rows for k in r if k.startswith(("reward/", "objective/", "policy/entropy"))}))
    timings["total"] = round(time.time() - started, 1)
    metrics = {"eval": evals, "selfplay_eval": {k: selfplay[k] for k in ("labels", "num_pairs", "comparison", "skipped", "warnings")},
               "receiver": receiver, "rl_curves_first_vs_last": curves, "timings_s": timings,
               "plots": [p.name for p in plots], "samples": {"before_rl": before, "after_rl": after}}
    (report / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    print("\n=== [demo] report:", report)
    print(markdown_table({k: v for k, v in curves.items()}, ["first", "last"]))
    print((report / "selfplay_table.md").read_text())
    print(f"stage times (s): {timings}")
    return 0
