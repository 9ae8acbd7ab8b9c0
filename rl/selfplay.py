"""Self-play: two speakers with their own personas talk; every turn becomes a ``Rollout`` for its speaker.

Both speakers are the policy unless a frozen partner plays B. Each turn, all dialogues of the batch generate
together (one batched, left-padded, KV-cached call per turn), each speaker with its own sampling settings; the
speaker's prompt is ``PromptFormatter.encode_context(own persona, history)``. With ``reuse_kv_cache`` a speaker's
call continues from the KV cache of its own previous prompt and response (``models.generation.kv_reuse``), so only the
tokens added since (the partner's reply, the re-opened turn) are encoded.
Scoring happens after the whole batch of dialogues is done, so turn-level rewards see the full transcript.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rl.experience import Rollout


@dataclass
class Sampling:
    """One speaker's decoding settings."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@dataclass
class Dialogue:
    """A self-play transcript; ``turns[i]`` was spoken by ``speakers[i]``."""

    dialogue_id: str
    pair_id: str
    persona_a: list[str]
    persona_b: list[str]
    turns: list[str] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"[A persona] {' '.join(self.persona_a)}", f"[B persona] {' '.join(self.persona_b)}"]
        lines += [f"{s}: {t}" for s, t in zip(self.speakers, self.turns)]
        return "\n".join(lines)


@dataclass
class SelfPlayBatch:
    rollouts: list[Rollout]
    dialogues: list[Dialogue]

    @property
    def trainable(self) -> list[Rollout]:
        return [r for r in self.rollouts if r.trainable]


class SelfPlayEnv:
    """Persona-pair self-play.

    Args:
        pairs: rows with ``pair_id``, ``persona_a``, ``persona_b`` and optionally ``first_utterance``
            (``data_prep.build_selfplay_pairs``).
        formatter: a ``models.prompting.prompt.PromptFormatter`` for the policy's tokenizer.
        reward_fn: ``f(prompts, completions, **kwargs) -> list[float]``; kwargs persona, partner_persona, history,
            turn, speaker, dialogue_id. If it exposes ``last_components`` (name → list of floats) after a call,
            those are logged as ``reward/<name>``.
        pairs_per_step, rollouts_per_pair: persona pairs per batch (per process) and dialogues per pair.
        sampling_a, sampling_b: decoding settings of speaker A and B.
        response_length: max new tokens per turn; stop_on_eos: cut each response after its first EOS.
        partner: a frozen model (or a lagged copy of the policy) that speaks as B (its turns are not trained);
            None: the policy plays both.
        train_partner_turns: with the policy as B, also train on B's turns (greedy turns are never trained).
        use_first_utterance: A's first line is the data's opening line (not trained); B replies first.
        seed, process_index, num_processes: which pairs each process takes at each step (deterministic).
        generate_fn: ``(model, contexts, **sampling) -> list[list[int]]``; default: ``models.generation.sampling``'s
            ``generate_with_cache`` with ``reuse_kv_cache``, else ``generate``.
        reuse_kv_cache: reuse each speaker's KV cache across its turns (ignored with a custom ``generate_fn`` or
            the ``static`` backend).
        generation_backend: ``"hf"`` or ``"static"`` (``models.generation.sampling.generate``'s ``backend``).
    """

    def __init__(self, pairs: Sequence[dict], formatter, reward_fn: Callable | None = None, *, pairs_per_step: int = 4,
                 rollouts_per_pair: int = 6, sampling_a: Sampling | None = None, sampling_b: Sampling | None = None,
                 response_length: int = 32, stop_on_eos: bool = True, partner=None, train_partner_turns: bool = True,
                 use_first_utterance: bool = False, seed: int = 0, process_index: int = 0, num_processes: int = 1,
                 generate_fn: Callable | None = None, reuse_kv_cache: bool = True, generation_backend: str = "hf"):
        if not pairs:
            raise ValueError("self-play needs at least one persona pair")
        self.pairs = list(pairs)
        self.formatter, self.reward_fn = formatter, reward_fn
        self.tokenizer = formatter.tokenizer
        self.pairs_per_step, self.rollouts_per_pair = pairs_per_step, rollouts_per_pair
        self.sampling = {"A": sampling_a or Sampling(), "B": sampling_b or Sampling()}
        self.response_length, self.stop_on_eos = response_length, stop_on_eos
        self.partner, self.train_partner_turns = partner, train_partner_turns
        self.use_first_utterance = use_first_utterance
        self.seed, self.process_index, self.num_processes = seed, process_index, num_processes
        self.generate_fn = generate_fn
        self.generation_backend = generation_backend
        self.reuse_kv_cache = reuse_kv_cache and generate_fn is None and generation_backend == "hf"

    def pairs_for_step(self, step: int) -> list[dict]:
        """This process's pairs at ``step``: a fresh seeded shuffle per pass over the data, no state to save."""
        per_step = self.pairs_per_step * self.num_processes
        start = (step * per_step + self.process_index * self.pairs_per_step)
        out = []
        for k in range(start, start + self.pairs_per_step):
            epoch, pos = divmod(k, len(self.pairs))
            order = list(range(len(self.pairs)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            out.append(self.pairs[order[pos]])
        return out

    def _cut(self, ids: list[int]) -> list[int]:
        """Up to and including the first end marker (the formatter's, EOS for SmolLM2), at most response_length."""
        end = getattr(self.formatter, "end_token_id", self.tokenizer.eos_token_id)
        if self.stop_on_eos and end in ids:
            ids = ids[: ids.index(end) + 1]
        return ids[: self.response_length]

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def rollout(self, policy, step: int, num_exchanges: int) -> SelfPlayBatch:
        """Play ``num_exchanges`` A+B exchanges for every dialogue (pairs × rollouts_per_pair) with ``policy``."""
        dialogues = []
        for pair in self.pairs_for_step(step):
            for k in range(self.rollouts_per_pair):
                d = Dialogue(f"{pair['pair_id']}#{k}", str(pair["pair_id"]), list(pair["persona_a"]), list(pair["persona_b"]))
                if self.use_first_utterance and pair.get("first_utterance"):
                    d.turns.append(pair["first_utterance"])
                    d.speakers.append("A")
                dialogues.append(d)
        rollouts = []
        caches: dict[tuple[int, str], Any] = {}  # (dialogue index, speaker) → its RowCache from its previous turn
        for _ in range(2 * num_exchanges):
            # all dialogues are at the same turn, so one speaker generates for the whole batch
            turn = len(dialogues[0].turns)
            speaker = "A" if turn % 2 == 0 else "B"
            contexts = [self.formatter.encode_context(d.persona_a if speaker == "A" else d.persona_b, d.turns) for d in dialogues]
            model = self.partner if (speaker == "B" and self.partner is not None) else policy
            s = self.sampling[speaker]
            kw = dict(max_new_tokens=self.response_length, do_sample=s.do_sample, temperature=s.temperature,
                      top_k=s.top_k, top_p=s.top_p)
            if self.reuse_kv_cache:
                from models.generation.sampling import generate_with_cache

                outs, new = generate_with_cache(model, contexts, [caches.get((k, speaker)) for k in range(len(contexts))], **kw)
                caches.update({(k, speaker): c for k, c in enumerate(new)})
            else:
                from models.generation.sampling import generate

                outs = self.generate_fn(model, contexts, **kw) if self.generate_fn else \
                    generate(model, contexts, backend=self.generation_backend, **kw)
            # a greedy turn is not a sample of the policy's distribution: it is never trained
            trainable = (speaker == "A" or (self.partner is None and self.train_partner_turns)) and s.do_sample
            for d, ctx, out in zip(dialogues, contexts, outs):
                response = self._cut(list(out))
                own, other = (d.persona_a, d.persona_b) if speaker == "A" else (d.persona_b, d.persona_a)
                info: dict[str, Any] = dict(persona=own, partner_persona=other, history=list(d.turns), turn=turn,
                                            speaker=speaker, dialogue_id=d.dialogue_id)
                text = self.formatter.decode_response(response)
                rollouts.append(Rollout(query_ids=list(ctx), response_ids=response, group=(d.pair_id, turn, speaker),
                                        trainable=trainable, response_text=text, info=info, temperature=s.temperature))
                d.turns.append(text)
                d.speakers.append(speaker)
        return SelfPlayBatch(rollouts, dialogues)

    def score(self, batch: SelfPlayBatch) -> None:
        """Call the reward function once on every turn of the batch; sets ``score`` and ``components``."""
        rs = batch.rollouts
        kwargs = {key: [r.info[key] for r in rs] for key in ("persona", "partner_persona", "history", "turn", "speaker", "dialogue_id")}
        prompts = [r.prompt_text or self._text(r.query_ids) for r in rs]
        scores = self.reward_fn(prompts=prompts, completions=[r.response_text for r in rs], **kwargs)
        if len(scores) != len(rs):
            raise ValueError(f"reward function returned {len(scores)} scores for {len(rs)} completions")
        components = getattr(self.reward_fn, "last_components", None) or {}
        for i, r in enumerate(rs):
            r.prompt_text = prompts[i]
            if scores[i] is None:  # "not applicable" (every reward component abstained): kept, with no weight in the
                r.score = None     # loss, so every process still trains on the same number of rows
            else:
                r.score = float(scores[i])
            r.components = {name: float(vals[i]) for name, vals in components.items() if vals[i] is not None}
