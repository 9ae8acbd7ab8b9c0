"""Self-play and PPO-update throughput: ``p2bot bench selfplay``.

1. Self-play generation on the same persona pairs, in the same run:
   - ours: ``rl.SelfPlayEnv.rollout`` (all dialogues of the batch generate each turn in one batched, KV-cached call);
   - seed-style: one dialogue at a time, the whole history re-encoded every turn, no KV cache (every new token
     re-runs the full sequence), the same sampling settings.
   Reported as generated tokens/s, ours with and without reusing each speaker's KV cache across its turns. An
   instrumented pass without reuse also measures the share of generation time spent encoding prompts (prefill) and
   the share of prompt tokens that a speaker's cache from its previous turn covers.
2. PPO update (``PPOTrainer.step`` on the rollouts from 1) for the full policy (+ frozen reference, AdamW over all
   weights) and for LoRA (reference = adapter-disabled base), optionally with activation checkpointing
   (``lora+ckpt``), in micro-batches of ``micro_batch_size``, each in a fresh child process so that its peak
   resident memory is its own. Reported as (query+response) tokens/s through ``step`` and peak RSS.
3. Episode layouts (``--layout_exchanges 2 4``): for each number of exchanges, fresh self-play rollouts, then the
   full-model update with ``episode_layout: turn`` (one row per turn, each re-encoding its context) and ``speaker``
   (one row per speaker and dialogue), each in a fresh process: s/step and trained (response) tokens/s.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from data_prep.files.atomic import write_text_atomic


@dataclass
class BenchSelfPlayConfig:
    model: str = field(default="embedded", metadata={"help": "policy: 'embedded', a hub id or a local path"})
    data: str = field(default="", metadata={"help": "dialogues to draw persona pairs from ('' = the sample set)"})
    num_pairs: int = field(default=4, metadata={"help": "persona pairs"})
    rollouts_per_pair: int = field(default=2, metadata={"help": "dialogues per pair"})
    num_exchanges: int = field(default=2, metadata={"help": "A+B exchanges per dialogue"})
    response_length: int = field(default=24, metadata={"help": "max new tokens per turn"})
    max_history_tokens: int = field(default=256, metadata={"help": "history token budget"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of both speakers"})
    skip_seed_style: bool = field(default=False, metadata={"help": "only measure ours"})
    update_modes: list[str] = field(default_factory=lambda: ["full", "lora", "lora+ckpt"],
                                    metadata={"help": "PPO-update phases: 'full' or 'lora', '+ckpt' adds activation "
                                                      "checkpointing ('none': self-play only)"})
    update_steps: int = field(default=2, metadata={"help": "PPOTrainer.step calls per update phase (first one is warm-up)"})
    layout_exchanges: list[int] = field(default_factory=list, metadata={
        "help": "compare the turn and speaker episode layouts on rollouts of these many exchanges (e.g. 2 4)"})
    num_ppo_epochs: int = field(default=1, metadata={"help": "PPO epochs per step in the update phases"})
    micro_batch_size: int = field(default=4, metadata={"help": "rollouts per forward/backward in the update phases "
                                                               "(gradient accumulation covers the rest)"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, ..."})
    torch_dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16 (default: the checkpoint's)"})
    output_dir: str = field(default="runs/bench_selfplay", metadata={"help": "where bench_selfplay.json is written"})
    seed: int = field(default=0, metadata={"help": "seed of pair order and sampling"})

    def __post_init__(self):
        if min(self.num_pairs, self.rollouts_per_pair, self.num_exchanges, self.response_length) < 1:
            raise ValueError("num_pairs, rollouts_per_pair, num_exchanges and response_length must be >= 1")
        if self.update_modes == ["none"]:
            self.update_modes = []
        bad = [m for m in self.update_modes if m.removesuffix("+ckpt") not in ("full", "lora")]
        if bad:
            raise ValueError(f"update_modes: unknown mode(s) {bad}; choose from full, lora, full+ckpt, lora+ckpt")
        if self.micro_batch_size < 1:
            raise ValueError("micro_batch_size must be >= 1")
        if self.update_steps < 2 and self.update_modes:
            raise ValueError("update_steps must be >= 2 (the first step is a warm-up and not timed)")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def seed_style_selfplay(transmitter, formatter, pairs: list[dict], cfg: BenchSelfPlayConfig) -> list[list[int]]:
    """Dialogue by dialogue, turn by turn; returns every turn's generated ids."""
    from launch.commands.bench import seed_style_generate
    from models.generation.sampling import stop_token_ids

    stops, gen = stop_token_ids(transmitter.tokenizer), torch.Generator().manual_seed(cfg.seed)
    out = []
    for pair in pairs:
        for _ in range(cfg.rollouts_per_pair):
            turns: list[str] = []
            for t in range(2 * cfg.num_exchanges):
                persona = pair["persona_a"] if t % 2 == 0 else pair["persona_b"]
                ids = seed_style_generate(transmitter, formatter.encode_context(persona, turns), cfg.response_length,
                                          stops, cfg.temperature, gen)
                out.append(ids)
                turns.append(formatter.decode_response(ids))
    return out


class _TimedPrefill:
    """Wraps ``generate_fn`` to time, besides each call, one batched forward over the same prompts (the prefill).

    It also keeps every call's prompts and outputs, for ``reusable_share``.
    """

    def __init__(self):
        from models.generation.sampling import generate
        from models.networks.transmitter import pad_batch

        self._generate, self._pad = generate, pad_batch
        self.reset()

    def reset(self) -> None:
        self.generate_s = self.prefill_s = 0.0
        self.calls: list[tuple[list, list]] = []  # per turn: (prompts, outputs), dialogues in the same order

    def reusable_share(self) -> float:
        """Share of all prompt tokens that a speaker's KV cache from its previous turn (that turn's prompt and
        response, two calls back) could have covered: their common prefix with the new prompt. An upper bound:
        the last generated token has no cache entry yet."""
        from models.generation.kv_reuse import common_prefix

        total = sum(len(c) for prompts, _ in self.calls for c in prompts)
        covered = sum(common_prefix(list(old_p) + list(old_o), list(new_p))
                      for (olds, outs), (news, _) in zip(self.calls, self.calls[2:])
                      for old_p, old_o, new_p in zip(olds, outs, news))
        return covered / max(total, 1)

    def __call__(self, model, contexts, **kwargs):
        start = time.perf_counter()
        out = self._generate(model, contexts, **kwargs)
        self.generate_s += time.perf_counter() - start
        self.calls.append((contexts, out))
        tok = model.tokenizer
        ids, mask = self._pad(contexts, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, side="left")
        start = time.perf_counter()
        with torch.no_grad():
            model.lm(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=True, logits_to_keep=1)
        self.prefill_s += time.perf_counter() - start
        return out


def _update_phase(mode: str, cfg_dict: dict, rollouts_path: str, result_path: str, layout: str = "turn") -> None:
    """Child process: ``update_steps`` PPO steps on the saved rollouts; writes tokens/s and peak RSS."""
    from models.networks.transmitter import Transmitter
    from rl.config import PPOConfig
    from rl.experience import Rollout
    from rl.trainer import PPOTrainer

    cfg = BenchSelfPlayConfig(**cfg_dict)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    rows = json.loads(Path(rollouts_path).read_text())
    rollouts = [Rollout(query_ids=r["query_ids"], response_ids=r["response_ids"], score=r["score"], group=tuple(r["group"]),
                        info=r.get("info", {})) for r in rows]
    base, checkpointing = mode.removesuffix("+ckpt"), mode.endswith("+ckpt")
    lora = None
    if base == "lora":
        from peft import LoraConfig

        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    from rl.episodes import LAYOUTS

    num_rows = len(LAYOUTS[layout](rollouts, 0, "cpu").rows)
    turns_per_row = len(rollouts) / num_rows
    micro = max(1, round(cfg.micro_batch_size / turns_per_row))  # about the same tokens per micro-batch in both layouts
    accumulation = max(1, num_rows // micro)
    ppo = PPOConfig(output_dir=str(Path(cfg.output_dir) / f"update_{mode}"), num_ppo_epochs=cfg.num_ppo_epochs,
                    use_peft=base == "lora", learning_rate=1e-6, max_steps=cfg.update_steps, seed=cfg.seed,
                    gradient_accumulation_steps=accumulation, gradient_checkpointing=checkpointing, episode_layout=layout,
                    pairs_per_step=1, rollouts_per_pair=max(1, num_rows))
    from models.loading.pretrained import resolve_dtype

    dtype = resolve_dtype(cfg.torch_dtype)
    policy = Transmitter.from_pretrained(cfg.model, with_value_head=True, lora=lora, torch_dtype=dtype)
    ref = None if base == "lora" else Transmitter.from_pretrained(cfg.model, torch_dtype=dtype)
    trainer = PPOTrainer(ppo, policy, ref)
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    tokens = sum(len(r.query_ids) + len(r.response_ids) for r in rollouts) * cfg.num_ppo_epochs
    trained_tokens = sum(len(r.response_ids) for r in rollouts) * cfg.num_ppo_epochs
    trainer.step(rollouts)  # warm-up: allocates optimizer state
    start = time.perf_counter()
    stats = {}
    for _ in range(cfg.update_steps - 1):
        stats = trainer.step(rollouts)
    seconds = (time.perf_counter() - start) / (cfg.update_steps - 1)
    result = dict(mode=mode, layout=layout, rows=num_rows, trainable_parameters=trainable,
                  micro_batch_size=num_rows // accumulation, seconds_per_step=seconds, tokens_per_step=tokens,
                  trained_tokens_per_s=trained_tokens / seconds,
                  tokens_per_s=tokens / seconds, peak_rss_mb=_max_rss_mb(), kl=stats.get("objective/kl"),
                  skipped=stats.get("guard/skipped_update"))
    Path(result_path).write_text(json.dumps(result))


def run_update_phase(mode: str, cfg: BenchSelfPlayConfig, rollouts_path: Path, layout: str = "turn") -> dict:
    result_path = rollouts_path.with_name(f"update_{mode.replace('+', '_')}_{layout}.json")
    proc = mp.get_context("spawn").Process(target=_update_phase,
                                           args=(mode, asdict(cfg), str(rollouts_path), str(result_path), layout))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"p2bot bench selfplay: the {mode} update phase failed (exit code {proc.exitcode})")
    return json.loads(result_path.read_text())


CONFIG_TYPES = (BenchSelfPlayConfig,)  # what run parses; the docs build its parser from this


def run(argv: list[str] | None = None) -> int:
    from data_prep import build_selfplay_pairs, read_dialogues, resolve_data_path
    from launch.config_io import start_command
    from launch.provenance import run_provenance
    from models.networks.transmitter import Transmitter
    from models.prompting.prompt import PromptFormatter
    from rl.selfplay import Sampling, SelfPlayEnv

    cfg, out = start_command(*CONFIG_TYPES, argv, prog="p2bot bench selfplay", description=__doc__)
    pairs = list(build_selfplay_pairs(read_dialogues(resolve_data_path(cfg.data)).dialogues, seed=cfg.seed))[: cfg.num_pairs]
    from models.loading.pretrained import resolve_device, resolve_dtype

    model = Transmitter.from_pretrained(cfg.model, device=resolve_device(cfg.device),
                                        torch_dtype=resolve_dtype(cfg.torch_dtype)).eval()
    fmt = PromptFormatter(model.tokenizer, max_history_tokens=cfg.max_history_tokens)
    sampling = Sampling(True, cfg.temperature)

    def timed_rollout(num_exchanges=cfg.num_exchanges, **env_kw):
        env = SelfPlayEnv(pairs, fmt, pairs_per_step=len(pairs), rollouts_per_pair=cfg.rollouts_per_pair,
                          sampling_a=sampling, sampling_b=sampling, response_length=cfg.response_length, seed=cfg.seed,
                          **env_kw)
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        batch = env.rollout(model, 0, num_exchanges)
        seconds = time.perf_counter() - start
        tokens = sum(len(r.response_ids) for r in batch.rollouts)
        return batch, dict(seconds=seconds, tokens=tokens, tokens_per_s=tokens / seconds)

    timed_rollout()  # warm-up (first-call overheads)
    batch, ours = timed_rollout()  # the default: batched per turn, each speaker's KV cache reused across its turns
    report: dict = dict(
        model=cfg.model, dialogues=len(batch.dialogues), turns=len(batch.rollouts), response_length=cfg.response_length,
        torch_threads=torch.get_num_threads(),
        mean_prompt_tokens=sum(len(r.query_ids) for r in batch.rollouts) / len(batch.rollouts), ours=ours,
    )
    report["ours_no_reuse"] = timed_rollout(reuse_kv_cache=False)[1]
    report["reuse_speedup"] = ours["tokens_per_s"] / report["ours_no_reuse"]["tokens_per_s"]
    timer = _TimedPrefill()  # an instrumented pass without reuse: how much of generation is prefill, how much reusable
    timed_rollout(generate_fn=timer)
    report["prefill_share"] = timer.prefill_s / max(timer.generate_s, 1e-9)
    report["reusable_share"] = timer.reusable_share()
    if not cfg.skip_seed_style:
        start = time.perf_counter()
        seed_out = seed_style_selfplay(model, fmt, pairs, cfg)
        seed_s = time.perf_counter() - start
        seed_tokens = sum(map(len, seed_out))
        report["seed_style"] = dict(seconds=seed_s, tokens=seed_tokens, tokens_per_s=seed_tokens / seed_s)
        report["speedup"] = report["ours"]["tokens_per_s"] / report["seed_style"]["tokens_per_s"]

    def save_rollouts(batch, name: str) -> Path:
        rng = torch.Generator().manual_seed(cfg.seed)
        rows = [dict(query_ids=r.query_ids, response_ids=r.response_ids or [fmt.tokenizer.eos_token_id],
                     score=float(torch.randn((), generator=rng)), group=list(r.group),
                     info={k: r.info[k] for k in ("dialogue_id", "speaker", "turn")}) for r in batch.rollouts]
        out.mkdir(parents=True, exist_ok=True)
        path = out / name
        path.write_text(json.dumps(rows))
        return path

    layout_batches = {n: timed_rollout(num_exchanges=n)[0] for n in cfg.layout_exchanges}
    model = None  # free it before the update phases (they load their own copies)
    if cfg.update_modes:
        rollouts_path = save_rollouts(batch, "rollouts.json")
        report["update"] = {mode: run_update_phase(mode, cfg, rollouts_path) for mode in cfg.update_modes}
    if layout_batches:
        report["layouts"] = {}
        for n, lb in layout_batches.items():
            path = save_rollouts(lb, f"rollouts_{n}x.json")
            runs = {layout: run_update_phase("full", cfg, path, layout) for layout in ("turn", "speaker")}
            runs["speedup"] = runs["turn"]["seconds_per_step"] / runs["speaker"]["seconds_per_step"]
            runs["turns"] = len(lb.rollouts)
            report["layouts"][str(n)] = runs

    report["provenance"] = run_provenance("p2bot bench selfplay", argv, cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "bench_selfplay.json", json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"results: {out / 'bench_selfplay.json'}")
    return 0


def _print(report: dict) -> None:
    print(f"Self-play: {report['dialogues']} dialogues, {report['turns']} turns, <= {report['response_length']} tokens/turn, "
          f"mean prompt {report['mean_prompt_tokens']:.0f} tokens, {report['torch_threads']} threads")
    print(f"{'method':<54} {'tokens/s':>9} {'tokens':>7} {'seconds':>8}")
    rows = [("ours (batched per turn, KV cache reused across turns)", "ours"),
            ("ours without cross-turn reuse", "ours_no_reuse"),
            ("seed-style (1 dialogue, no cache, re-encode)", "seed_style")]
    for name, key in rows:
        if key in report:
            r = report[key]
            print(f"{name:<54} {r['tokens_per_s']:>9.1f} {r['tokens']:>7d} {r['seconds']:>8.1f}")
    if "speedup" in report:
        print(f"speedup over seed-style: {report['speedup']:.1f}x")
    print(f"cross-turn cache reuse: {report['reuse_speedup']:.2f}x; without it, prompt encoding (prefill) takes "
          f"{100 * report['prefill_share']:.1f}% of generation time and {100 * report['reusable_share']:.1f}% of prompt "
          "tokens were in the speaker's cache from its previous turn")
    if "update" in report:
        print(f"\nPPO update ({report['turns']} rollouts, scores random, fresh process each, micro-batch "
              f"{next(iter(report['update'].values()))['micro_batch_size']})")
        print(f"{'mode':<10} {'trainable params':>16} {'s/step':>7} {'tokens/s':>9} {'peak RSS MB':>11}")
        for mode, r in report["update"].items():
            print(f"{mode:<10} {r['trainable_parameters']:>16,d} {r['seconds_per_step']:>7.1f} {r['tokens_per_s']:>9.1f} "
                  f"{r['peak_rss_mb']:>11.0f}")
    if "layouts" in report:
        print("\nEpisode layouts, full-model update (fresh process each; tokens/s counts trained response tokens)")
        print(f"{'exchanges':>9} {'layout':<8} {'rows':>5} {'s/step':>7} {'trained tok/s':>13} {'peak RSS MB':>11} {'speedup':>8}")
        for n, runs in report["layouts"].items():
            for layout in ("turn", "speaker"):
                r = runs[layout]
                speed = f"{runs['speedup']:.2f}x" if layout == "speaker" else ""
                print(f"{n:>9} {layout:<8} {r['rows']:>5} {r['seconds_per_step']:>7.1f} {r['trained_tokens_per_s']:>13.1f} "
                      f"{r['peak_rss_mb']:>11.0f} {speed:>8}")
