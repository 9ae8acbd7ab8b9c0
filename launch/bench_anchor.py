"""``p2bot bench anchor``: p2bot's PPO side by side with TRL 1.12's PPO, on TRL's own setup.

The anchor (``trl112_ppo_bench.py``, a script kept beside the benchmark data, run in its own virtual environment
with TRL 1.12.0: ``pip install torch==2.13.0 trl==1.12.0 gguf``) trains
SmolLM2-135M with ``trl.experimental.ppo.PPOTrainer``: batches of 8 prompts, 32 sampled tokens per response, a frozen
135M reward model, ``ITERS`` iterations of ``EPOCHS`` PPO epochs; it prints one ``RESULT`` line (s/iteration, peak
RSS). This command first runs p2bot's matching run in this process: the same prompts, built the same way from the
first 64 dialogues of ``--data`` (persona of user 2, the first line as the partner's, at most 128 tokens), the policy
``--model`` with a value head as critic, a frozen reference for the KL term, ``--batch_size`` prompts per iteration,
``--response_length`` tokens sampled (stopping at EOS), reward = the mean log-prob of the response under a frozen
copy of the same LM (``models.scoring.scorers.LMScorer``; after its prompt, as TRL's reward model reads prompt and
response, or on its own: ``--no_reward_on_prompt``, the ``fluency`` reward), then ``rl.trainer.PPOTrainer.step`` with
``--epochs`` PPO epochs, one mini-batch, learning rate 1e-6. Each iteration (generation + scoring + step) is timed.

With ``--anchor_python`` and ``--anchor_script`` it then runs the anchor as a subprocess with the same iterations and
epochs, the same data, p2bot's local copy of the same model (``SMOL_DIR``) and as many threads as this process, and
prints both side by side: s/iteration, peak RSS, and the ratios p2bot/TRL (the issue's targets: at most 0.5x the
time, at most 1/3 of the memory; printed, not enforced). Peak RSS is counted as the anchor counts it: the process's
``ru_maxrss`` (model loading included) in KiB / 1e6. Writes ``bench_anchor.json`` (both results, ratios and the run's
provenance) to ``--output_dir``.

    p2bot bench anchor --data PATH/Synthetic-Persona-Chat_valid.csv --iters 3 --epochs 4 --bf16 \\
        --anchor_python ~/venv-trl112/bin/python --anchor_script PATH/trl112_ppo_bench.py --output_dir runs/bench_anchor
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep.files.atomic import write_text_atomic

SPC_COLUMNS = ("user 1 personas", "user 2 personas", "Best Generated Conversation")
TARGETS = {"seconds_per_iteration": 0.5, "peak_rss_gb": 1 / 3}  # the p2bot/TRL targets (at most)


@dataclass
class BenchAnchorConfig:
    data: str = field(metadata={"help": "Synthetic-Persona-Chat CSV (columns 'user 1 personas', 'user 2 personas', "
                                        "'Best Generated Conversation'), e.g. Synthetic-Persona-Chat_valid.csv"})
    model: str = field(default="embedded", metadata={"help": "policy (and reference, reward model): 'embedded', a hub "
                                                             "id or a local path"})
    iters: int = field(default=3, metadata={"help": "iterations (rollout + score + PPO step)"})
    epochs: int = field(default=4, metadata={"help": "PPO epochs per iteration (num_ppo_epochs)"})
    batch_size: int = field(default=8, metadata={"help": "prompts per iteration (the anchor's 8)"})
    num_prompts: int = field(default=64, metadata={"help": "prompts from the first N dialogues of --data"})
    max_prompt_tokens: int = field(default=128, metadata={"help": "prompts are truncated to this many tokens"})
    response_length: int = field(default=32, metadata={"help": "max new tokens per response (stops at EOS)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (the anchor's: TRL's default 0.7)"})
    bf16: bool = field(default=False, metadata={"help": "p2bot's forwards under bfloat16 autocast (PPOConfig.bf16)"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "p2bot's micro-batches per PPO mini-batch"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate"})
    kl_coef: float = field(default=0.05, metadata={"help": "KL penalty coefficient (TRL's default)"})
    reward_on_prompt: bool = field(default=True, metadata={
        "help": "score the response after its prompt (as TRL's reward model reads prompt + response); off: the "
                "fluency reward, the response on its own"})
    reward_model: str = field(default="", metadata={
        "help": "the frozen LM that scores responses ('': the frozen reference, as p2bot rl shares it; else a "
                "separate frozen copy of this model)"})
    anchor_python: str = field(default="", metadata={"help": "python of the TRL 1.12 environment ('' = no anchor run)"})
    anchor_script: str = field(default="", metadata={"help": "the anchor script (trl112_ppo_bench.py)"})
    anchor_timeout: int = field(default=0, metadata={"help": "seconds the anchor may run (0: no limit)"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default); the anchor gets "
                                                            "as many (OMP_NUM_THREADS)"})
    cpu: bool = field(default=True, metadata={"help": "run on the CPU, as the anchor does (use_cpu=True)"})
    output_dir: str = field(default="runs/bench_anchor", metadata={"help": "where bench_anchor.json is written"})
    seed: int = field(default=0, metadata={"help": "seed of prompt order and sampling"})

    def __post_init__(self):
        if min(self.iters, self.epochs, self.batch_size, self.num_prompts, self.max_prompt_tokens,
               self.response_length) < 1:
            raise ValueError("iters, epochs, batch_size, num_prompts, max_prompt_tokens and response_length must be >= 1")
        if self.temperature <= 0 or self.learning_rate <= 0 or self.kl_coef < 0:
            raise ValueError("temperature and learning_rate must be > 0, kl_coef >= 0")
        if bool(self.anchor_python) != bool(self.anchor_script):
            raise ValueError("--anchor_python and --anchor_script go together (both, or neither for p2bot's side only)")


CONFIG_TYPES = (BenchAnchorConfig,)  # what run parses; the docs build its parser from this


# --- the anchor's setup, rebuilt ---


def read_prompts(path: str | os.PathLike, num_prompts: int = 64) -> list[str]:
    """The anchor's prompts: for each of the first ``num_prompts`` rows, user 2's persona and the dialogue's first
    line, spoken by the partner (``Your persona: ...\\nPartner: ...\\nYou:``), read as the anchor reads the CSV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:  # universal newlines, as the anchor's open(): \r\n in fields reads as \n
        reader = csv.DictReader(f)
        missing = [c for c in SPC_COLUMNS[1:] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a Synthetic-Persona-Chat CSV: no column(s) {missing} "
                             f"(found {reader.fieldnames})")
        rows = [row for _, row in zip(range(num_prompts), reader)]
    prompts = []
    for row in rows:
        first = row["Best Generated Conversation"].split("\n")[0]
        prompts.append("Your persona: " + row["user 2 personas"].replace("\n", " ") + "\n"
                       + first.replace("User 1:", "Partner:") + "\nYou:")
    return prompts


RESULT_RE = re.compile(r"^RESULT[ \t]+(\S+)((?:[ \t]+\S+=\S+)+)[ \t]*$", re.MULTILINE)


def parse_result_line(text: str) -> dict:
    """The last ``RESULT <name> key=value ...`` line of ``text`` (the anchor's stdout) as a dict: numbers parsed, a
    trailing unit ``s`` dropped (``wall=48.4s`` -> ``wall_s: 48.4``, ``per_iter=..`` -> ``per_iter_s``)."""
    matches = list(RESULT_RE.finditer(text))
    if not matches:
        raise ValueError("no 'RESULT <name> key=value ...' line in the anchor's output")
    match = matches[-1]
    out: dict = {"name": match.group(1)}
    for pair in match.group(2).split():
        key, _, value = pair.partition("=")
        if re.fullmatch(r"-?\d+", value):
            out[key] = int(value)
        elif re.fullmatch(r"-?\d+(\.\d*)?(e-?\d+)?", value):
            out[key] = float(value)
        elif re.fullmatch(r"-?\d+(\.\d*)?s", value):
            out[f"{key}_s"] = float(value[:-1])
        else:
            out[key] = value
    return out


class AnchorError(RuntimeError):
    """The anchor subprocess failed or printed no RESULT line; the message ends with its output's tail."""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_anchor(python: str, script: str, iters: int, epochs: int, *, model_dir: str, data: str, threads: int,
               timeout: float | None = None, log_path: str | os.PathLike | None = None) -> dict:
    """Run the anchor script (``python script iters epochs``) with ``SMOL_DIR=model_dir``, ``SPC_CSV=data``,
    ``OUT_DIR`` a temp dir and ``OMP_NUM_THREADS=threads``; its parsed RESULT line. ``log_path`` keeps its output.

    Raises:
        AnchorError: it failed, timed out or printed no RESULT line (the message holds its stderr's tail).
    """
    for name, value in (("--anchor_python", python), ("--anchor_script", script)):
        if not Path(value).is_file():
            raise FileNotFoundError(f"{name}: {value}: no such file")
    with tempfile.TemporaryDirectory(prefix="p2bot-anchor-") as tmp:
        env = dict(os.environ, SMOL_DIR=str(model_dir), SPC_CSV=str(Path(data).resolve()), OUT_DIR=tmp,
                   OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
        env.pop("PYTHONPATH", None)  # the anchor's environment is its own (TRL 1.12 cannot live beside p2bot's)
        command = [python, str(script), str(iters), str(epochs)]
        try:
            proc = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout or None)
        except subprocess.TimeoutExpired as err:
            stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
            raise AnchorError(f"the anchor {script} ran past {timeout} s; its stderr ends:\n{_tail(stderr)}") from None
    if log_path is not None:
        write_text_atomic(log_path, f"$ {' '.join(command)}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    if proc.returncode != 0:
        raise AnchorError(f"the anchor {script} failed (exit code {proc.returncode}); its stderr ends:\n"
                          f"{_tail(proc.stderr) or '(empty)'}")
    try:
        result = parse_result_line(proc.stdout)
    except ValueError:
        raise AnchorError(f"the anchor {script} printed no RESULT line; its stdout ends:\n{_tail(proc.stdout)}\n"
                          f"its stderr ends:\n{_tail(proc.stderr)}") from None
    result["command"] = command
    result["omp_num_threads"] = threads
    return result


def local_model_dir(name_or_path: str) -> str:
    """A local directory of ``name_or_path`` for the anchor: the embedded policy's safetensors conversion (p2bot's
    cache), a local path as it is, a hub id's snapshot (from the cache when offline)."""
    from models.loading.pretrained import resolve_model_path

    path = resolve_model_path(name_or_path, kind="policy")
    if os.path.isdir(path):
        return path
    import huggingface_hub

    return huggingface_hub.snapshot_download(path)


# --- p2bot's side ---


def _max_rss_gb() -> float:
    """This process's peak RSS as the anchor counts it (Linux ``ru_maxrss`` KiB / 1e6)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def weight_fingerprint(model) -> list[tuple[float, float]]:
    """(sum, sum of squares) in float64 of every trainable parameter, in chunks (no full float64 copy)."""
    out = []
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                flat = p.detach().reshape(-1)
                s = q = 0.0
                for chunk in flat.split(1 << 20):
                    c = chunk.double()
                    s, q = s + float(c.sum()), q + float(c.square().sum())
                out.append((s, q))
    return out


def _time_stages(trainer, names: tuple[str, ...]) -> dict[str, float]:
    """Time the ``trainer``'s methods ``names`` (stages of ``PPOTrainer.step``): each call adds its seconds to the
    returned dict, under its name."""
    from launch.bench_profile import wrap_methods

    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timer(name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    wrap_methods(trainer, {name: name for name in names}, timer)
    return seconds


def run_p2bot(cfg: BenchAnchorConfig) -> dict:
    """p2bot's side: load, then ``cfg.iters`` timed iterations of generate → score → ``PPOTrainer.step``."""
    from accelerate.utils import set_seed

    from launch.commands.bench import PeakRSS
    from launch.commands.rl import freeze, load_transmitter
    from launch.errors import option
    from models.generation.sampling import generate
    from rewards import ScorerPool
    from rewards.fluency import FluencyReward
    from rl.config import PPOConfig
    from rl.experience import Rollout
    from rl.trainer import PPOTrainer, build_accelerator

    with option("--data"):
        prompts = read_prompts(cfg.data, cfg.num_prompts)
    if len(prompts) < cfg.batch_size:
        raise ValueError(f"--data: {cfg.data}: {len(prompts)} dialogue(s), fewer than --batch_size={cfg.batch_size}")
    started = time.perf_counter()
    ppo = PPOConfig(output_dir=str(Path(cfg.output_dir) / "p2bot"), seed=cfg.seed, max_steps=cfg.iters,
                    model_name_or_path=cfg.model, num_ppo_epochs=cfg.epochs, num_mini_batches=1,
                    gradient_accumulation_steps=cfg.gradient_accumulation_steps, bf16=cfg.bf16, learning_rate=cfg.learning_rate, kl_coef=cfg.kl_coef,
                    response_length=cfg.response_length, temperature=cfg.temperature, stop_token="eos",
                    pairs_per_step=cfg.batch_size, rollouts_per_pair=1, min_exchanges=1, max_exchanges=1,
                    reward_funcs=["fluency"], report_to=[], disable_tqdm=True)
    accelerator = build_accelerator(ppo, cpu=cfg.cpu)
    set_seed(cfg.seed)
    policy = load_transmitter(cfg.model, with_value_head=True, flag="--model")
    ref = freeze(load_transmitter(cfg.model, flag="--model"))
    scorer_model = ref if not cfg.reward_model else freeze(load_transmitter(cfg.reward_model, flag="--reward_model"))
    pool = ScorerPool(policy=cfg.reward_model or cfg.model, transmitter=scorer_model)
    trainer = PPOTrainer(ppo, policy, ref, accelerator=accelerator)
    phase_s = _time_stages(trainer, ("make_experience", "update"))
    scorer_model.to(accelerator.device)
    scorer = pool.lm_scorer()
    fluency = FluencyReward(scorer)
    tok = trainer.tokenizer
    query_ids = [tok(p, truncation=True, max_length=cfg.max_prompt_tokens)["input_ids"] for p in prompts]
    order = list(range(len(query_ids)))
    random.Random(cfg.seed).shuffle(order)  # the anchor's dataloader samples the prompts in a shuffled order too
    load_s = time.perf_counter() - started
    rss_loaded_gb = _max_rss_gb()
    before = weight_fingerprint(trainer.policy)

    iterations = []
    with PeakRSS(interval=0.05) as peak:
        for it in range(cfg.iters):
            start = (it * cfg.batch_size) % len(order)
            batch = [query_ids[order[(start + k) % len(order)]] for k in range(cfg.batch_size)]
            phase_s.clear()
            t0 = time.perf_counter()
            with trainer.generation_model() as model:
                responses = generate(model, batch, max_new_tokens=cfg.response_length, do_sample=True,
                                     temperature=cfg.temperature)
            t1 = time.perf_counter()
            if cfg.reward_on_prompt:
                means = scorer.mean_logprobs(batch, responses)
                scores = [fluency.empty_score if m is None else m for m in means]
            else:
                texts = [tok.decode(r, skip_special_tokens=True) for r in responses]
                scores = fluency([tok.decode(q) for q in batch], texts)
            t2 = time.perf_counter()
            rollouts = [Rollout(query_ids=list(q), response_ids=list(r), score=float(s), group=(i,),
                                temperature=cfg.temperature) for i, (q, r, s) in enumerate(zip(batch, responses, scores))]
            stats = trainer.step(rollouts)
            t3 = time.perf_counter()
            iterations.append(dict(seconds=t3 - t0, generate_s=t1 - t0, score_s=t2 - t1, step_s=t3 - t2,
                                   experience_s=phase_s.get("make_experience", 0.0), update_s=phase_s.get("update", 0.0),
                                   response_tokens=sum(map(len, responses)),
                                   mean_prompt_tokens=sum(map(len, batch)) / len(batch),
                                   mean_score=sum(scores) / len(scores),
                                   stats={k: float(v) for k, v in stats.items()}))
            print(f"[p2bot bench anchor] p2bot iteration {it + 1}/{cfg.iters}: {t3 - t0:.1f} s (generate "
                  f"{t1 - t0:.1f}, score {t2 - t1:.1f}, step {t3 - t2:.1f} = experience "
                  f"{phase_s.get('make_experience', 0.0):.1f} + update {phase_s.get('update', 0.0):.1f} + rest), mean score {iterations[-1]['mean_score']:.3f}",
                  flush=True)
    after = weight_fingerprint(trainer.policy)
    changed = sum(a != b for a, b in zip(before, after))
    total_s = sum(i["seconds"] for i in iterations)
    return dict(
        seconds_per_iteration=total_s / cfg.iters, wall_s=total_s, iterations=iterations, load_s=load_s,
        peak_rss_gb=_max_rss_gb(), rss_after_loading_gb=rss_loaded_gb, iterations_peak_rss_gb=peak.peak / 1024 / 1e6,
        changed_parameter_tensors=changed, trainable_parameter_tensors=len(before),
        trainable_parameters=sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad),
        torch_threads=torch.get_num_threads(), device=str(accelerator.device), model=cfg.model,
        prompts=len(prompts), batch_size=cfg.batch_size, response_length=cfg.response_length, epochs=cfg.epochs,
        iters=cfg.iters, reward="mean log-prob of the response " + ("after its prompt" if cfg.reward_on_prompt else
                                                                    "on its own (fluency)")
        + " under " + ("the frozen reference" if not cfg.reward_model else f"a frozen {cfg.reward_model}"),
    )


# --- report ---


def compare(ours: dict, anchor: dict) -> dict:
    """p2bot/TRL ratios of s/iteration and peak RSS, with the issue's targets."""
    ratios = {"seconds_per_iteration": ours["seconds_per_iteration"] / anchor["per_iter_s"],
              "peak_rss_gb": ours["peak_rss_gb"] / anchor["peak_rss_gb"]}
    return {key: dict(ratio=value, target=TARGETS[key], meets_target=value <= TARGETS[key]) for key, value in ratios.items()}


def format_table(ours: dict, anchor: dict | None, ratios: dict | None) -> str:
    head = f"{'':<22} {'p2bot':>9}" + (f" {'TRL 1.12':>9} {'p2bot/TRL':>10} {'target':>8}" if anchor else "")
    lines = [head]
    for label, key, akey in (("s/iteration", "seconds_per_iteration", "per_iter_s"), ("peak RSS (GB)", "peak_rss_gb",
                                                                                        "peak_rss_gb")):
        line = f"{label:<22} {ours[key]:>9.2f}"
        if anchor:
            r = ratios[key]
            line += f" {anchor[akey]:>9.2f} {r['ratio']:>9.2f}x {'<= ' + format(r['target'], '.2f') + 'x':>8}"
            line += "  (met)" if r["meets_target"] else "  (not met)"
        lines.append(line)
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    from launch.config_io import parse_configs, save_resolved_config
    from launch.errors import option
    from launch.provenance import run_provenance

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot bench anchor", description=__doc__)
    with option("--data"):
        if not Path(cfg.data).is_file():  # before any model is loaded
            raise FileNotFoundError(f"{cfg.data}: no such file")
    if cfg.anchor_python:
        for name, value in (("--anchor_python", cfg.anchor_python), ("--anchor_script", cfg.anchor_script)):
            with option(name):
                if not Path(value).is_file():
                    raise FileNotFoundError(f"{value}: no such file")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.output_dir)
    save_resolved_config(out, cfg)
    path = out / "bench_anchor.json"

    ours = run_p2bot(cfg)
    report: dict = dict(p2bot=ours, anchor=None, ratios=None,
                        setup=dict(iters=cfg.iters, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                   response_length=cfg.response_length, prompts=ours["prompts"],
                                   torch_threads=ours["torch_threads"],
                                   peak_rss_unit="GB as the anchor counts them: ru_maxrss (KiB) / 1e6, loading included"))
    report["provenance"] = run_provenance("p2bot bench anchor", argv, cfg)
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")  # p2bot's side is kept if the anchor fails
    if cfg.anchor_python:
        with option("--model"):
            model_dir = local_model_dir(cfg.model)
        print(f"[p2bot bench anchor] running the anchor: {cfg.anchor_python} {cfg.anchor_script} {cfg.iters} "
              f"{cfg.epochs} (OMP_NUM_THREADS={ours['torch_threads']}, SMOL_DIR={model_dir})", flush=True)
        try:
            anchor = run_anchor(cfg.anchor_python, cfg.anchor_script, cfg.iters, cfg.epochs, model_dir=model_dir,
                                data=cfg.data, threads=ours["torch_threads"], timeout=cfg.anchor_timeout or None,
                                log_path=out / "anchor_output.txt")
        except AnchorError as err:
            raise SystemExit(f"p2bot bench anchor: error: {err}\n(p2bot's side is in {path}; the anchor's output in "
                             f"{out / 'anchor_output.txt'})") from None
        anchor["model_dir"] = model_dir
        report["anchor"], report["ratios"] = anchor, compare(ours, anchor)
        report["provenance"] = run_provenance("p2bot bench anchor", argv, cfg)
        write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    print(f"\nPPO, {cfg.iters} iterations x {cfg.epochs} epochs, batch {cfg.batch_size}, <= {cfg.response_length} new "
          f"tokens, {ours['torch_threads']} threads, model {cfg.model}")
    print(format_table(ours, report["anchor"], report["ratios"]))
    print("(peak RSS: the process's ru_maxrss, model loading included, KiB / 1e6 as the anchor counts it)")
    print(f"results: {path}")
    return 0
