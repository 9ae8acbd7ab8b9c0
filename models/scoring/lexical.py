"""Lexical persona scorers: the baselines a learned Receiver has to beat, and a model-free judge.

C(·) lower-cases, splits into words, drops stop-words and strips a plural/verb "s" (``content_words``).

- ``LexicalScorer``: an utterance's score against a persona is the best Jaccard overlap between its content words
  and those of any one persona sentence, max_j |C(u) ∩ C(p_j)| / |C(u) ∪ C(p_j)|. It is also the "persona coverage
  (lexical)" measure of the evaluation.
- ``TfidfPersonaScorer``: the cosine between the IDF-weighted content words of an utterance and of the whole
  persona, IDF taken over a corpus of persona sentences, so that a shared rare word ("paris") counts for more than a
  shared common one ("dog"). It shares no weights and no architecture with any Receiver: ``p2bot eval --selfplay``
  ranks personas with it beside the judge encoder.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

# Function words and chat filler that say nothing about a persona (a hand-made list).
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each even ever few for from further get gets getting got had hadn't has hasn't have haven't having
    he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
    is isn't it it's its itself just let's like me more most much must mustn't my myself no nor not now of off
    oh ok okay on once one only or other ought our ours ourselves out over own really same shan't she she'd
    she'll she's should shouldn't so some such than that that's the their theirs them themselves then there
    there's these they they'd they'll they're they've this those through to too under until up us very was
    wasn't we we'd we'll we're we've well were weren't what what's when when's where where's which while who
    who's whom why why's will with won't would wouldn't yeah yes yet you you'd you'll you're you've your yours
    yourself yourselves hi hello hey thanks thank lot lots sure great good nice cool wow
    know think go going want make thing things something anything really maybe pretty way
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` minus stop-words, with a final "s" stripped from words over 3 letters."""
    words = set()
    for w in _WORD.findall(text.lower().replace("\u2019", "'")):
        if w in STOP_WORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        words.add(w)
    return words


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def lexical_persona_score(utterance: str, persona: Sequence[str]) -> float:
    """max over persona sentences of the content-word Jaccard overlap with ``utterance``."""
    u = content_words(utterance)
    return max((jaccard(u, content_words(p)) for p in persona), default=0.0)


class LexicalScorer:
    """Same call shape as ``Receiver.score`` (scores only), for side-by-side evaluation."""

    def score(self, utterances: Sequence[str], personas: Sequence[Sequence[str]], batch_size: int = 0) -> torch.Tensor:
        if len(utterances) != len(personas):
            raise ValueError(f"{len(utterances)} utterances but {len(personas)} personas")
        return torch.tensor([lexical_persona_score(u, p) for u, p in zip(utterances, personas)], dtype=torch.float)


class TfidfPersonaScorer:
    """Model-free persona scores (same call shape as ``Receiver.score``, scores only).

    ``score(u, P) = Σ_{w ∈ C(u) ∩ C(P)} idf(w)² / (‖C(u)‖ ‖C(P)‖)``, binary term counts weighted by
    ``idf(w) = ln((1 + N) / (1 + df(w))) + 1`` over the ``corpus``'s N sentences; a word the corpus lacks gets the
    largest IDF. 0 when either side has no content word.
    """

    def __init__(self, corpus: Iterable[str]):
        docs = [content_words(s) for s in corpus]
        df = Counter(w for d in docs for w in d)
        self.unseen_idf = math.log(1 + len(docs)) + 1
        self.idf = {w: math.log((1 + len(docs)) / (1 + c)) + 1 for w, c in df.items()}
        self._persona_cache: dict[tuple[str, ...], tuple[dict[str, float], float]] = {}

    def _vector(self, words: set[str]) -> tuple[dict[str, float], float]:
        vec = {w: self.idf.get(w, self.unseen_idf) for w in words}
        return vec, math.sqrt(sum(v * v for v in vec.values()))

    def _persona(self, persona: Sequence[str]) -> tuple[dict[str, float], float]:
        key = tuple(persona)
        if key not in self._persona_cache:
            self._persona_cache[key] = self._vector(set().union(*(content_words(p) for p in persona)))
        return self._persona_cache[key]

    def score(self, utterances: Sequence[str], personas: Sequence[Sequence[str]], batch_size: int = 0) -> torch.Tensor:
        if len(utterances) != len(personas):
            raise ValueError(f"{len(utterances)} utterances but {len(personas)} personas")
        out = []
        for u, p in zip(utterances, personas):
            (uv, un), (pv, pn) = self._vector(content_words(u)), self._persona(p)
            out.append(sum(w * pv[k] for k, w in uv.items() if k in pv) / (un * pn) if un and pn else 0.0)
        return torch.tensor(out, dtype=torch.float)
