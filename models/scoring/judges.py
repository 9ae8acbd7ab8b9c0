"""Frozen judges of self-play dialogues: models that RL never optimised, one job each.

- ``PersonaJudge``: ranks a speaker's persona among candidate personas from that speaker's utterances, with a
  frozen bi-encoder (by default the *untrained* all-MiniLM-L6-v2): the persona perceivability P² is about.
- ``LMPersonaJudge``: the same ranking by a frozen causal LM (another model family than the bi-encoders): how much
  the speaker's utterances raise the likelihood of each candidate persona's text.
- ``LMJudge``: token NLL of each utterance under a frozen causal LM (by default the untuned embedded policy),
  given the speaker's persona and the history, in the judge's own prompt format.
- ``NLIJudge``: probability that a premise (a persona sentence, an earlier own turn) contradicts an utterance,
  from any MNLI-style sequence-classification checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

import torch

from models.scoring.metrics import example_ranks

AGGREGATES = ("mean", "max")


class PersonaJudge:
    """Persona perceivability by a frozen encoder.

    A candidate persona P scores ``agg_t score(u_t, P)`` over the speaker's non-empty utterances u_t, where
    ``score`` is the encoder's soft persona score (``Receiver.score``) and ``agg`` is the mean (default: the
    evidence of the whole dialogue side) or the max (its most revealing line).

    Args:
        encoder: anything with ``score(utterances, personas)`` giving scores (a ``models.networks.receiver.Receiver``,
            whose output holds them in ``.scores``; or a ``models.scoring.lexical.TfidfPersonaScorer``).
        aggregate: ``"mean"`` or ``"max"`` over utterances.
        batch_size: encoder batch size.
    """

    def __init__(self, encoder, aggregate: str = "mean", batch_size: int = 64):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate={aggregate!r}: expected one of {AGGREGATES}")
        self.encoder, self.aggregate, self.batch_size = encoder, aggregate, batch_size

    def candidate_scores(self, utterances: Sequence[str], candidates: Sequence[Sequence[str]]) -> torch.Tensor:
        """Score (C,) of each candidate persona; all equal (0) when the speaker said nothing."""
        said = [u for u in utterances if u.strip()]
        if not said:
            return torch.zeros(len(candidates))
        utts = [u for _ in candidates for u in said]
        personas = [list(p) for p in candidates for _ in said]
        out = self.encoder.score(utts, personas, batch_size=self.batch_size)
        s = torch.as_tensor(getattr(out, "scores", out)).float()  # a Receiver's ScoreOutput, or a lexical tensor
        s = s.view(len(candidates), len(said))  # (C, U)
        return s.mean(1) if self.aggregate == "mean" else s.max(1).values

    def rank(self, utterances: Sequence[str], own: Sequence[str], distractors: Sequence[Sequence[str]]) -> tuple[float, float]:
        """Hits@1 and reciprocal rank of ``own`` among ``[own, *distractors]`` (ties broken at random, in expectation)."""
        scores = self.candidate_scores(utterances, [own, *distractors])
        hits, rr = example_ranks(scores[:1], scores[1:].unsqueeze(0))
        return float(hits[0]), float(rr[0])


class LMPersonaJudge(PersonaJudge):
    """Persona perceivability by a frozen causal LM.

    A candidate persona P (its sentences joined) scores ``log p(P | U) - log p(P)``: its log-likelihood after the
    speaker's utterances U, in a plain-text frame, minus its log-likelihood after a frame without them (the pointwise
    mutual information of persona and utterances). The second term removes what makes a persona likely on its own
    (length, common words), so the ranking rewards only what the utterances reveal. U's tokens run once and the
    candidates share their KV cache (``Transmitter.score_candidates``); each persona's prior is computed once per
    judge.

    Args:
        lm: a ``models.networks.transmitter.Transmitter`` (its LM; the NUP head is not used).
        max_context_tokens: keep the last this many tokens of the utterances.
    """

    HEAD, TAIL = "Things a person said in a conversation:\n", "\nWhat this person says about themselves:"
    PRIOR = "What a person says about themselves:"

    def __init__(self, lm, max_context_tokens: int = 256):
        self.lm, self.max_context_tokens = lm, max_context_tokens
        self._priors: dict[tuple[str, ...], float] = {}

    def _ids(self, text: str) -> list[int]:
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _logprobs(self, context: list[int], candidates: list[list[int]]) -> list[float]:
        with torch.no_grad():
            _, token_lp = self.lm.score_candidates(context, candidates)
        return [float(lp.sum()) for lp in token_lp]

    def candidate_scores(self, utterances: Sequence[str], candidates: Sequence[Sequence[str]]) -> torch.Tensor:
        said = [u.strip() for u in utterances if u.strip()]
        if not said:
            return torch.zeros(len(candidates))
        keys = [tuple(p) for p in candidates]
        texts = {k: self._ids(" " + " ".join(k)) for k in keys}
        missing = [k for k in dict.fromkeys(keys) if k not in self._priors]
        if missing:
            self._priors.update(zip(missing, self._logprobs(self._ids(self.PRIOR), [texts[k] for k in missing])))
        context = self._ids(self.HEAD) + self._ids("\n".join(said))[-self.max_context_tokens:] + self._ids(self.TAIL)
        cond = self._logprobs(context, [texts[k] for k in keys])
        return torch.tensor([c - self._priors[k] for c, k in zip(cond, keys)])


class LMJudge:
    """Per-utterance token NLL under a frozen causal LM.

    The utterance is scored as a response (``formatter.encode_response``: its tokens and the end marker) after
    a context in the judge's own format: ``"persona_history"`` (default: the speaker's persona and the
    history, what the speaker saw), ``"history"`` (no persona: a persona statement out of the blue costs) or
    ``"none"`` (the utterance alone).

    Args:
        scorer: a ``models.scoring.scorers.LMScorer`` over the judge LM.
        formatter: a ``models.prompting.prompt.PromptFormatter`` for the judge LM's tokenizer.
        context: what the utterance is conditioned on.
    """

    CONTEXTS = ("persona_history", "history", "none")

    def __init__(self, scorer, formatter, context: str = "persona_history"):
        if context not in self.CONTEXTS:
            raise ValueError(f"context={context!r}: expected one of {self.CONTEXTS}")
        self.scorer, self.formatter, self.context = scorer, formatter, context

    def _prefix(self, persona: Sequence[str], history: Sequence[str]) -> list[int]:
        f = self.formatter
        if self.context == "persona_history":
            return f.encode_context(persona, history)
        if self.context == "history":
            return f.encode_history_context(history)
        return self.scorer.start_ids + f.response_open_ids

    def nll(self, personas: Sequence[Sequence[str]], histories: Sequence[Sequence[str]], utterances: Sequence[str],
            chains: Sequence[Hashable] | None = None) -> list[tuple[float, int]]:
        """(summed NLL in nats, number of tokens) of each utterance after its context.

        Rows sharing a ``chains`` key (one speaker of one dialogue, in turn order) whose contexts extend each other
        are scored in one pass over the last row's context; a chain whose contexts do not (the history budget cut
        the transcript) is scored row by row. The numbers are the same either way.
        """
        prefixes = [self._prefix(p, h) for p, h in zip(personas, histories)]
        targets = [self.formatter.encode_response(u) for u in utterances]
        groups: dict[Hashable, list[int]] = {}
        for i in range(len(utterances)):
            groups.setdefault(chains[i] if chains is not None else ("#", i), []).append(i)
        sequences, spans, owners = [], [], []
        for rows in groups.values():
            seq = list(prefixes[rows[0]]) + targets[rows[0]]
            chained = all(prefixes[b][:len(list(prefixes[a]) + targets[a])] == list(prefixes[a]) + targets[a]
                          for a, b in zip(rows, rows[1:]))
            parts = [rows] if chained else [[r] for r in rows]
            for part in parts:
                last = part[-1]
                seq = list(prefixes[last]) + targets[last]
                sequences.append(seq)
                spans.append([(len(prefixes[r]), len(prefixes[r]) + len(targets[r])) for r in part])
                owners.append(part)
        out: list[tuple[float, int]] = [(0.0, 0)] * len(utterances)
        for part, lps in zip(owners, self.scorer.span_logprobs(sequences, spans)):
            for r, lp in zip(part, lps):
                out[r] = (-float(lp.sum()), int(lp.numel()))
        return out


class NLIJudge:
    """Contradiction probability from a sequence-classification NLI model (premise, hypothesis) → P(contradiction).

    Args:
        model: an ``AutoModelForSequenceClassification`` trained on MNLI-style labels.
        tokenizer: its tokenizer.
        contradiction_label: the ``config.id2label`` name of the contradiction class (default: the one label
            whose name starts with "contradict").
        batch_size: pairs per forward pass.
    """

    def __init__(self, model, tokenizer, contradiction_label: str | None = None, batch_size: int = 32):
        labels = {int(i): str(n) for i, n in model.config.id2label.items()}
        if contradiction_label is None:
            found = [i for i, n in labels.items() if n.lower().startswith("contradict")]
        else:
            found = [i for i, n in labels.items() if n == contradiction_label]
        if len(found) != 1:
            raise ValueError(f"NLI model {getattr(model.config, 'name_or_path', '')!r}: cannot tell its contradiction "
                             f"class from config.id2label={labels} (pass contradiction_label)")
        self.model, self.tokenizer, self.index, self.batch_size = model.eval(), tokenizer, found[0], batch_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, device=None, contradiction_label: str | None = None,
                        trust_remote_code: bool = False) -> NLIJudge:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, contradiction_label)

    @torch.no_grad()
    def contradiction(self, premises: Sequence[str], hypotheses: Sequence[str]) -> torch.Tensor:
        """P(contradiction) (N,) of each (premise, hypothesis) pair, on the CPU."""
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        device = next(self.model.parameters()).device
        out = []
        for s in range(0, len(premises), self.batch_size):
            enc = self.tokenizer(list(premises[s:s + self.batch_size]), list(hypotheses[s:s + self.batch_size]),
                                 padding=True, truncation=True, max_length=256, return_tensors="pt").to(device)
            out.append(self.model(**enc).logits.float().softmax(-1)[:, self.index].cpu())
        return torch.cat(out) if out else torch.empty(0)
