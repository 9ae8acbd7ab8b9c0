"""Evaluate a Transmitter: F1 of generated responses, Hits@1 (NUP head and LM likelihood), gold perplexity."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from data_prep import PersonaDialogue, build_transmitter_examples
from models.generation.sampling import generate
from models.prompting.prompt import PromptFormatter
from models.scoring.metrics import hits_at_1, perplexity, unigram_f1


@dataclass
class EvalResult:
    num_examples: int
    num_candidates: int
    f1: float | None = None
    hits1_nup: float | None = None
    hits1_lm: float | None = None
    ppl: float | None = None
    ppl_tokens: int = 0
    tokenizer: str = ""
    generation_seconds: float = 0.0
    scoring_seconds: float = 0.0
    samples: list[dict] = field(default_factory=list)
    # one list per measured quantity, in example order: dialogue_id, and f1, hits1_nup, hits1_lm, nll, tokens
    per_example: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A short human-readable table."""
        def fmt(v, pct=False):
            return "-" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.2f}")

        rows = [("F1", fmt(self.f1, True)), ("Hits@1 (NUP head)", fmt(self.hits1_nup, True)),
                ("Hits@1 (LM likelihood)", fmt(self.hits1_lm, True)),
                (f"PPL ({self.tokenizer} tokens)", fmt(self.ppl))]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
        lines += [f"{name:<{width}}  {value}" for name, value in rows]
        lines.append(f"({self.num_examples} examples, Hits@1 over {self.num_candidates} candidates)")
        return "\n".join(lines)


def tokenizer_name(transmitter) -> str:
    """Short name of the model's tokenizer for reports (perplexities are only comparable at one tokenizer)."""
    name = str(getattr(transmitter.tokenizer, "name_or_path", "") or transmitter.config.name_or_path)
    return name.rstrip("/").rsplit("/", 1)[-1] or type(transmitter.tokenizer).__name__


def build_eval_examples(dialogues: Sequence[PersonaDialogue], num_candidates: int = 20, seed: int = 0,
                        examples_per_dialogue: int = 0) -> list[dict]:
    """Eval rows: ``build_transmitter_examples`` with ``num_candidates - 1`` distractors (the data's own
    candidates where present, else responses of other dialogues drawn with ``seed``).

    Args:
        examples_per_dialogue: keep this many turns per dialogue, drawn with ``seed`` (0 = every turn).
    """
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")
    rows = list(build_transmitter_examples(dialogues, num_distractors=num_candidates - 1, seed=seed))
    if examples_per_dialogue <= 0:
        return rows
    rng = random.Random(seed)
    by_dialogue: dict[str, list[dict]] = {}
    for r in rows:
        by_dialogue.setdefault(r["dialogue_id"], []).append(r)
    kept = []
    for group in by_dialogue.values():
        kept += sorted(rng.sample(group, min(examples_per_dialogue, len(group))), key=lambda r: r["turn_index"])
    return kept


def generate_responses(transmitter, formatter: PromptFormatter, examples: Sequence[dict], *, batch_size: int = 16,
                       max_new_tokens: int = 32, progress: Callable[[int], None] | None = None,
                       **sampling) -> list[str]:
    """Responses for each example, batched by similar context length (less padding), in input order;
    ``progress(n)`` after each batch of ``n``."""
    contexts = [formatter.encode_context(ex["persona"], ex["history"]) for ex in examples]
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    out: list[str] = [""] * len(contexts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids = generate(transmitter, [contexts[i] for i in idx], max_new_tokens=max_new_tokens, **sampling)
        for i, row in zip(idx, ids):
            out[i] = formatter.decode_response(row)
        if progress is not None:
            progress(len(idx))
    return out


def f1_of(predictions: Sequence[str], examples: Sequence[dict]) -> float:
    return sum(f1_per_example(predictions, examples)) / max(len(examples), 1)


def f1_per_example(predictions: Sequence[str], examples: Sequence[dict]) -> list[float]:
    return [unigram_f1(p, ex["response"]) for p, ex in zip(predictions, examples)]


def evaluate_transmitter(transmitter, examples: Sequence[dict], formatter: PromptFormatter, *,
                         metrics: Sequence[str] = ("f1", "hits", "ppl"), batch_size: int = 16,
                         max_new_tokens: int = 32, num_samples: int = 5,
                         progress: Callable[[int], None] | None = None, **sampling) -> EvalResult:
    """Compute the requested metrics over ``examples`` (rows of ``build_eval_examples``).

    Args:
        metrics: any of ``"f1"`` (generation), ``"hits"`` (Hits@1 by NUP head and by mean token log-prob),
            ``"ppl"`` (perplexity of the gold responses incl. their end marker, at the model's token level).
        batch_size: contexts per generation batch.
        sampling: ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``num_beams`` for generation.
        progress: called as ``progress(n)`` when ``n`` more examples are generated (F1) or scored (Hits@1, PPL),
            so a bar over ``len(examples)`` per phase fills once per phase.
    """
    unknown = set(metrics) - {"f1", "hits", "ppl"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from f1, hits, ppl")
    num_candidates = 1 + min((len(ex["distractors"]) for ex in examples), default=0)
    result = EvalResult(num_examples=len(examples), num_candidates=num_candidates,
                        tokenizer=tokenizer_name(transmitter))
    per = result.per_example
    per["dialogue_id"] = [str(ex["dialogue_id"]) for ex in examples]
    was_training = transmitter.training
    transmitter.eval()
    try:
        if "f1" in metrics:
            start = time.perf_counter()
            preds = generate_responses(transmitter, formatter, examples, batch_size=batch_size,
                                       max_new_tokens=max_new_tokens, progress=progress, **sampling)
            result.generation_seconds = time.perf_counter() - start
            per["f1"] = f1_per_example(preds, examples)
            result.f1 = sum(per["f1"]) / max(len(examples), 1)
            result.samples = [dict(history_tail=ex["history"][-1:], gold=ex["response"], generated=p)
                              for ex, p in list(zip(examples, preds))[:num_samples]]
        if "hits" in metrics or "ppl" in metrics:
            start = time.perf_counter()
            for key in ("hits1_nup", "hits1_lm") if "hits" in metrics else ():
                per[key] = []
            per["nll"], per["tokens"] = [], []
            for ex in examples:
                context = formatter.encode_context(ex["persona"], ex["history"])
                texts = [ex["response"]] + list(ex["distractors"][: num_candidates - 1])
                cands = [formatter.encode_response(t) for t in texts] if "hits" in metrics else \
                    [formatter.encode_response(ex["response"])]
                nup, token_lp = transmitter.score_candidates(context, cands)
                if "hits" in metrics:
                    per["hits1_nup"].append(hits_at_1(nup))
                    per["hits1_lm"].append(hits_at_1([float(lp.mean()) for lp in token_lp]))
                per["nll"].append(-float(token_lp[0].sum()))
                per["tokens"].append(token_lp[0].numel())
                if progress is not None:
                    progress(1)
            result.scoring_seconds = time.perf_counter() - start
            if "hits" in metrics and examples:
                result.hits1_nup = sum(per["hits1_nup"]) / len(examples)
                result.hits1_lm = sum(per["hits1_lm"]) / len(examples)
            if "ppl" in metrics:
                result.ppl_tokens = sum(per["tokens"])
                result.ppl = perplexity(sum(per["nll"]), result.ppl_tokens)
            else:
                del per["nll"], per["tokens"]
    finally:
        transmitter.train(was_training)
    return result
