"""``p2bot eval``: F1, Hits@1 (NUP head and LM likelihood) and perplexity of a Transmitter on a data set
(``launch.commands.eval_gold``), with ``--compare`` against a second model on the same turns with paired bootstrap
intervals; with ``--selfplay``, self-play on held-out persona pairs scored by frozen judges
(``launch.commands.eval_selfplay``).

Hits@1 ranks the gold response among ``num_candidates`` (the data's own candidates, else responses of other
dialogues drawn with ``seed``). Perplexity is over the gold response tokens (incl. the end marker) at the
model's own tokenizer level. Writes ``eval_results.json`` (with ``--compare`` also ``eval_table.md``) and the
resolved config to ``output_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from launch.config_io import start_command
from launch.errors import require_inputs
from models.generation.sampling import BACKENDS
from models.loading.pretrained import resolve_dtype


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
    do_sample: bool | None = field(default=None, metadata={
        "help": "sample instead of greedy / beam search (default: greedy for F1, sampling for --selfplay)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    num_beams: int = field(default=1, metadata={"help": "beam search width"})
    seed: int = field(default=0, metadata={"help": "seed of distractor / turn sampling and of generation"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where eval_results.json is written"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ..."})
    torch_dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16 for every model loaded "
                                                                    "(default: the checkpoint's)"})
    log_level: str = field(default="warning", metadata={"help": "logging level: debug, info, warning, error, critical"})

    # --- self-play evaluation (--selfplay) ---
    selfplay: bool = field(default=False, metadata={"help": "evaluate self-play on held-out persona pairs with frozen judges"})
    pairs: int = field(default=32, metadata={"help": "--selfplay: persona pairs (the first N of the selected dialogues; 0 = all)"})
    skip_pairs: int = field(default=0, metadata={
        "help": "--selfplay: skip the first N pairs (e.g. to validate on pairs disjoint from a test slice)"})
    dialogues_per_pair: int = field(default=2, metadata={"help": "--selfplay: dialogues per pair"})
    exchanges: int = field(default=3, metadata={"help": "--selfplay: A+B exchanges per dialogue"})
    partner: str | None = field(default=None, metadata={
        "help": "--selfplay: a fixed partner model that speaks as B for every evaluated model (only A is judged)"})
    compare: str | None = field(default=None, metadata={
        "help": "a second model evaluated on the same turns (with --selfplay: pairs and seeds); differences are "
                "model - compare, with paired-bootstrap CIs (over dialogues; with --selfplay over pairs)"})
    compare_results: str | None = field(default=None, metadata={
        "help": "without --selfplay, with --compare: read the compare model's per-turn values from this earlier "
                "p2bot eval's output_dir (same data, turns and settings: checked) instead of evaluating it again"})
    compare_transcripts: str | None = field(default=None, metadata={
        "help": "--selfplay: with --compare, read the compare model's dialogues from this earlier --selfplay run's "
                "output_dir instead of generating them again (same model, pairs and generation settings: checked) "
                "and judge them again"})
    judge_encoder: str = field(default="embedded", metadata={
        "help": "--selfplay: frozen encoder that ranks the speaker's persona ('embedded': untrained all-MiniLM-L6-v2)"})
    judge_aggregate: str = field(default="mean", metadata={"help": "--selfplay: mean or max of the per-utterance scores"})
    judge_lm: str = field(default="embedded", metadata={
        "help": "--selfplay: frozen LM for NLL/PPL ('embedded': the untuned SmolLM2-135M-Instruct)"})
    judge_persona_lm: str = field(default="none", metadata={
        "help": "--selfplay: a frozen causal LM that also ranks the speaker's persona, by how much the utterances raise "
                "the persona text's likelihood ('embedded': the untuned SmolLM2-135M-Instruct; about 2 s per judged "
                "speaker on one CPU core; none: off)"})
    judge_context: str = field(default="persona_history", metadata={
        "help": "--selfplay: what the judge LM conditions on: persona_history, history or none"})
    receiver: str | None = field(default=None, metadata={
        "help": "--selfplay: also rank personas with this trained Receiver (reported apart: RL optimised it)"})
    nli_model: str | None = field(default=None, metadata={
        "help": "--selfplay: MNLI-style sequence-classification checkpoint for contradictions (none: skipped)"})
    seen_personas_from: str | None = field(default=None, metadata={
        "help": "--selfplay: the training dialogues ('sample' or a file; same formats as --data): perceivability is "
                "also reported over the speakers whose persona is not in them (held-out pairs may reuse personas)"})
    seen_personas_skip: int = field(default=0, metadata={
        "help": "--selfplay: skip the first N dialogues of --seen_personas_from (e.g. the held-out ones)"})
    num_persona_candidates: int = field(default=20, metadata={"help": "--selfplay: own persona + distractors"})
    bootstrap_samples: int = field(default=2000, metadata={"help": "bootstrap resamples of a --compare"})
    batch_pairs: int = field(default=8, metadata={"help": "--selfplay: persona pairs generated together"})
    generation_backend: str = field(default="hf", metadata={"help": "--selfplay: hf, static (static KV cache; "
                                                                    "torch.compile on CUDA) or continuous (continuous "
                                                                    "batching, paged KV cache)"})
    num_sample_dialogues: int = field(default=4, metadata={"help": "--selfplay: dialogues written to the samples file"})

    def __post_init__(self):
        resolve_dtype(self.torch_dtype)  # a clear error for a bad name
        if self.do_sample is None:
            self.do_sample = self.selfplay
        if self.selfplay:
            for name in ("dialogues_per_pair", "exchanges", "batch_pairs", "bootstrap_samples", "max_new_tokens"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
            if self.skip_pairs < 0 or self.pairs < 0:
                raise ValueError(f"pairs={self.pairs}, skip_pairs={self.skip_pairs}: must be >= 0")
            if self.num_beams > 1:
                raise ValueError("--selfplay does not support beam search (num_beams > 1)")
            if self.generation_backend not in BACKENDS:
                raise ValueError(f"generation_backend={self.generation_backend!r}: expected one of {BACKENDS}")
            if self.judge_aggregate not in ("mean", "max"):
                raise ValueError(f"judge_aggregate={self.judge_aggregate!r}: expected mean or max")
            if self.judge_context not in ("persona_history", "history", "none"):
                raise ValueError(f"judge_context={self.judge_context!r}: expected persona_history, history or none")
            if self.compare_transcripts:
                from rl.evaluation.transcripts import transcripts_folder  # noqa: PLC0415 (only when asked)

                if not self.compare:
                    raise ValueError("--compare_transcripts needs --compare (the model whose transcripts are reused)")
                if transcripts_folder(self.compare_transcripts).resolve() == Path(self.output_dir).resolve():
                    raise ValueError(f"--compare_transcripts {self.compare_transcripts}: that is this run's "
                                     "output_dir, which this run would overwrite; write this evaluation to another "
                                     "output_dir")
            if self.num_persona_candidates < 2:
                raise ValueError(f"num_persona_candidates={self.num_persona_candidates}: must be at least 2")
        elif self.compare_transcripts:
            raise ValueError("--compare_transcripts reuses --selfplay dialogues; without --selfplay use "
                             "--compare_results")
        if self.compare_results and (self.selfplay or not self.compare):
            raise ValueError("--compare_results needs --compare and no --selfplay (with --selfplay, "
                             "--compare_transcripts reuses the compare model's dialogues)")
        if self.bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples={self.bootstrap_samples}: must be at least 1")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("num_beams > 1 and do_sample are exclusive: pick beam search or sampling")
        if self.num_candidates < 2:
            raise ValueError(f"num_candidates must be >= 2, got {self.num_candidates}")

    def metric_list(self) -> list[str]:
        return [m.strip() for m in self.metrics.split(",") if m.strip()]


CONFIG_TYPES = (EvalConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    cfg, out = start_command(*CONFIG_TYPES, argv, prog="p2bot eval", description=__doc__)
    torch.manual_seed(cfg.seed)
    require_inputs(models={"--model": cfg.model, "--compare": cfg.compare})
    if cfg.selfplay:
        from launch.commands.eval_selfplay import run_selfplay_eval

        return run_selfplay_eval(cfg, argv)
    from launch.commands.eval_gold import run_gold_eval

    return run_gold_eval(cfg, argv, out)
