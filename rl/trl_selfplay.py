"""Persona self-play inside ``trl.GRPOTrainer``: a multi-turn ``rollout_func`` and p2bot's rewards as TRL rewards.

Each dataset row names a persona pair (``selfplay_dataset``). ``SelfPlayRollout`` plays one dialogue per row: the
trained speaker A (``trainer.model``) and a partner B talk for ``exchanges`` A+B exchanges, every context built as
``SelfPlayEnv`` builds it (``PromptFormatter.encode_context(own persona, history)``), so greedy dialogues are the same.

TRL sees A's side of the dialogue as one sequence, exactly the tokens A was conditioned on when it sampled:

    prompt_ids     = encode_context(persona_a, history before A's first reply)
    completion_ids = r_1, e_1, r_2, e_2, ..., r_N      env_mask = 1 on every r_k, 0 on every e_k

where r_k are A's sampled reply tokens and e_k the tokens that extend ``prompt + r_1 ... r_k`` to A's next context
(the end of A's turn, the partner's reply as a user turn, the response opener). TRL multiplies its loss mask by
``env_mask``, so the partner's tokens are context, never trained. The chain holds while each new context starts with
the previous sequence: the history was not cut (``max_history_tokens`` large enough) and A's reply re-tokenises from
its text to the same ids. Where it does not, the dialogue **stops** at that point (A's completion ends with its last
chained reply) rather than train tokens on a context the model never saw; ``chain_breaks`` counts them.

``DialogueReward`` scores every generated turn of every dialogue in one call with the kwargs ``SelfPlayEnv.score``
passes (``persona``, ``partner_persona``, ``history``, ``turn``, ``speaker``, ``dialogue_id``), then reduces each
dialogue to the **mean over A's trained turns**.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from rewards import Component, Composite, ScorerPool, build_reward, parse_reward_specs, registered_rewards, reward_name
from rl.partner import LaggedPartner
from rl.selfplay import Sampling

ENV_KEYS = ("transcript", "speakers", "generated", "turn_prompts", "turn_spans", "persona", "partner_persona",
            "dialogue_id")


def selfplay_dataset(pairs: Sequence[dict]):
    """A ``datasets.Dataset`` for ``GRPOTrainer``: one row per pair, its ``prompt`` the pair's ``pair_id`` (the key
    ``SelfPlayRollout`` looks the personas up by)."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [str(p["pair_id"]) for p in pairs]})


@dataclass
class _Play:
    """One dialogue in progress; ``ids`` is A's sequence so far (prompt + completion), ``mask`` its env_mask."""

    pair: dict
    dialogue_id: str
    turns: list[str] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    spans: list[list[int] | None] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    prompt_len: int = 0
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # per completion token: the sampler's (vLLM), else 0.0
    end: int = 0  # the turn index after its last turn
    stopped: bool = False


class _VLLMSpeaker:
    """Speaker A's turns through TRL's ``VLLMGeneration``: one call per turn on every process (server mode and
    tensor parallelism gather the prompts of all processes), each reply at most ``response_length`` tokens."""

    def __init__(self, vllm, accelerator, response_length: int):
        self.vllm, self.accelerator, self.response_length = vllm, accelerator, response_length
        self.collective = getattr(vllm, "mode", "colocate") == "server" or getattr(vllm, "tensor_parallel_size", 1) > 1

    def generate(self, contexts: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """(reply ids, their log-probs) per context; the log-prob of each sampled token as vLLM reports it."""
        if self.collective:
            total = self.accelerator.reduce(torch.tensor([len(contexts)], device=self.accelerator.device), "sum")
            if int(total.item()) == 0:
                return [], []
        elif not contexts:
            return [], []
        cap = self.vllm.max_completion_length
        self.vllm.max_completion_length = self.response_length
        try:
            _, completion_ids, logprobs, _ = self.vllm.generate(prompts=contexts, images=None, num_generations=1)
        finally:
            self.vllm.max_completion_length = cap
        return ([list(c) for c in completion_ids],
                [[float(lp[0]) for lp in row] if row is not None else [0.0] * len(c)
                 for c, row in zip(completion_ids, logprobs or [None] * len(completion_ids))])


class SelfPlayRollout:
    """A ``rollout_func`` for ``trl.GRPOTrainer``: persona self-play seen from the trained speaker's side.

    Args:
        pairs: rows with ``pair_id``, ``persona_a``, ``persona_b`` and optionally ``first_utterance``
            (``data_prep.build_selfplay_pairs``); the dataset's ``prompt`` is the ``pair_id`` (``selfplay_dataset``).
        formatter: the policy's ``models.prompting.prompt.PromptFormatter``.
        exchanges: A+B exchanges per dialogue.
        partner: who speaks as B: None (the policy itself, its turns not trained), a frozen model with ``.lm`` and
            ``.tokenizer`` (a ``Transmitter``), or a ``rl.partner.LaggedPartner`` over a copy of the policy's LM,
            synced from the policy every ``sync_steps`` optimizer steps (not restored on resume).
        partner_sampling: B's decoding settings (default: sampled at temperature 1).
        speaker_sampling: A's decoding settings; default the trainer's (``temperature``, ``top_k``, ``top_p``), which
            TRL's loss also divides the logits by. Set it only for evaluation (e.g. greedy).
        response_length: max new tokens per turn; stop_on_eos: cut each reply after its first end marker.
        use_first_utterance: the pair's ``first_utterance`` is A's opening line (in the prompt, not trained).

    Called as ``rollout(prompts, trainer)``, it returns one dialogue per prompt. TRL's sampler has already repeated
    each prompt ``num_generations`` times, so a group of one pair's dialogues arrives as consecutive prompts. The
    result holds ``prompt_ids``, ``completion_ids``, ``logprobs`` (A's log-probs at the trainer's temperature, from one
    forward pass of the policy after the dialogue; 0.0 on env tokens), ``env_mask`` and, per dialogue, the keys TRL
    forwards to the reward functions: ``transcript`` (turn texts), ``speakers``, ``generated`` (False for the given
    opening line), ``turn_prompts`` (each turn's context text), ``turn_spans`` ([start, end) in ``completion_ids`` of
    the tokens a turn added to A's view: A's reply, or the env tokens carrying B's turn; None when the turn is not in
    the completion), ``persona``, ``partner_persona`` and ``dialogue_id``.

    Speaker A generates with TRL's vLLM engine (``trainer.vllm_generation``, colocated or a server; TRL syncs its
    weights before each rollout) when the trainer has ``use_vllm``, with the GRPO config's sampling settings, at most
    ``response_length`` tokens a turn; ``logprobs`` are then vLLM's, the sampler's own. Otherwise A generates with
    ``models.generation.sampling.generate`` on the unwrapped policy. The partner always uses p2bot's generation.
    """

    def __init__(self, pairs: Sequence[dict], formatter, *, exchanges: int = 2, partner=None,
                 partner_sampling: Sampling | None = None, speaker_sampling: Sampling | None = None,
                 response_length: int = 32, stop_on_eos: bool = True, use_first_utterance: bool = False):
        if exchanges < 1:
            raise ValueError(f"exchanges={exchanges}: must be at least 1")
        self.pairs = {str(p["pair_id"]): p for p in pairs}
        if not self.pairs or len(self.pairs) != len(pairs):
            raise ValueError(f"self-play needs persona pairs with distinct pair_id ({len(pairs)} rows, "
                             f"{len(self.pairs)} distinct ids)")
        self.formatter, self.tokenizer = formatter, formatter.tokenizer
        self.exchanges, self.response_length, self.stop_on_eos = exchanges, response_length, stop_on_eos
        self.partner = partner
        self.partner_sampling, self.speaker_sampling = partner_sampling or Sampling(), speaker_sampling
        self.use_first_utterance = use_first_utterance
        self.chain_breaks = 0  # dialogues stopped early because A's next context did not extend its sequence

    # --- the rollout_func protocol ---
    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        from trl.models.utils import unwrap_model_for_generation

        vllm = None
        if getattr(trainer, "use_vllm", False):
            vllm = getattr(trainer, "vllm_generation", None)
            if vllm is None:
                raise ValueError("the trainer has use_vllm set but no vllm_generation engine (TRL builds it in "
                                 "GRPOTrainer.__init__ from use_vllm=True)")
        if vllm is not None and self.speaker_sampling is not None:
            raise ValueError("speaker_sampling is not used with TRL's vLLM engine, which samples with the GRPO "
                             "config's temperature, top_k and top_p: leave speaker_sampling unset, or use_vllm=False")
        plays = [self._start(p, k) for k, p in enumerate(prompts)]
        args = trainer.args
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as lm:
            policy = SimpleNamespace(lm=lm, tokenizer=self.tokenizer)
            partner = self._partner(policy, trainer.state.global_step)
            engine = _VLLMSpeaker(vllm, trainer.accelerator, self.response_length) if vllm is not None else policy
            for t in range(self.max_turns):  # the same count on every process: vLLM's calls are collective
                self._turn(plays, t, engine if t % 2 == 0 else partner, self._sampling(t, args))
            if vllm is None:
                logprobs = self._logprobs(lm, plays, args.temperature, args.per_device_train_batch_size)
            else:  # the sampler's own log-probs: what TRL's importance-sampling correction compares with
                logprobs = [[lp if m else 0.0 for lp, m in zip(p.logprobs, p.mask)] for p in plays]
        return {"prompt_ids": [p.ids[:p.prompt_len] for p in plays],
                "completion_ids": [p.ids[p.prompt_len:] for p in plays],
                "logprobs": logprobs,
                "env_mask": [p.mask for p in plays],
                # extra keys: TRL forwards them to the reward functions (DialogueReward)
                "transcript": [p.turns for p in plays],
                "speakers": [p.speakers for p in plays],
                "generated": [p.generated for p in plays],
                "turn_prompts": [p.prompts for p in plays],
                "turn_spans": [p.spans for p in plays],
                "persona": [list(p.pair["persona_a"]) for p in plays],
                "partner_persona": [list(p.pair["persona_b"]) for p in plays],
                "dialogue_id": [p.dialogue_id for p in plays]}

    @property
    def max_turns(self) -> int:
        """Turns of the longest dialogue: ``2 * exchanges``, plus the given opening line."""
        return 2 * self.exchanges + (1 if self.use_first_utterance else 0)

    # --- one dialogue ---
    def _start(self, prompt: Any, k: int) -> _Play:
        key = str(prompt)
        if key not in self.pairs:
            raise ValueError(f"dataset prompt {key!r} is not the pair_id of any persona pair given to SelfPlayRollout "
                             "(build the dataset with selfplay_dataset(pairs))")
        play = _Play(self.pairs[key], f"{key}#{k}")
        first = self.pairs[key].get("first_utterance")
        if self.use_first_utterance and first:
            play.turns.append(first)
            play.speakers.append("A")
            play.generated.append(False)
            play.prompts.append("")
            play.spans.append(None)
        play.end = len(play.turns) + 2 * self.exchanges  # as SelfPlayEnv: 2 * exchanges generated turns
        return play

    def _partner(self, policy, step: int):
        if self.partner is None:
            return policy
        if isinstance(self.partner, LaggedPartner):
            if not self.partner.names or step - self.partner.synced_at >= self.partner.sync_steps:
                self.partner.sync(policy.lm, step)
            return SimpleNamespace(lm=self.partner.model, tokenizer=self.tokenizer)
        return self.partner

    def _sampling(self, t: int, args) -> Sampling:
        if t % 2 == 1:
            return self.partner_sampling
        if self.speaker_sampling is not None:
            return self.speaker_sampling
        if getattr(args, "min_p", None) is not None or getattr(args, "repetition_penalty", 1.0) != 1.0:
            raise ValueError("SelfPlayRollout samples with temperature, top_k and top_p only: unset min_p and "
                             "repetition_penalty in the GRPO config")
        return Sampling(True, args.temperature, args.top_k or 0, args.top_p)

    def _cut(self, ids: list[int]) -> list[int]:
        """As ``SelfPlayEnv._cut``: up to and including the first end marker, at most ``response_length``."""
        end = self.formatter.end_token_id
        if self.stop_on_eos and end in ids:
            ids = ids[: ids.index(end) + 1]
        return ids[: self.response_length]

    def _turn(self, plays: list[_Play], t: int, model, s: Sampling) -> None:
        """Turn ``t`` of every dialogue still going, one batched ``generate`` call."""
        from models.generation.sampling import generate

        speaker = "A" if t % 2 == 0 else "B"
        active, contexts = [], []
        for p in plays:
            if p.stopped or len(p.turns) != t or t >= p.end:
                continue
            own = p.pair["persona_a"] if speaker == "A" else p.pair["persona_b"]
            ctx = self.formatter.encode_context(own, p.turns)
            if speaker == "A" and p.ids and ctx[: len(p.ids)] != p.ids:  # A's next context does not extend its view
                p.stopped = True
                self.chain_breaks += 1
                continue
            active.append(p)
            contexts.append(ctx)
        if isinstance(model, _VLLMSpeaker):
            outs, sampled_logprobs = model.generate(contexts)  # called by every process, even with no context
        elif not active:
            return
        else:
            outs = generate(model, contexts, max_new_tokens=self.response_length, do_sample=s.do_sample,
                            temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
            sampled_logprobs = [[0.0] * len(out) for out in outs]  # recomputed by one forward after the dialogue
        for p, ctx, out, out_logprobs in zip(active, contexts, outs, sampled_logprobs):
            reply = self._cut(list(out))
            span = None
            if speaker == "A":
                if not p.ids:  # A's first reply: its context is the prompt
                    p.ids, p.prompt_len = list(ctx), len(ctx)
                else:  # the env tokens carrying B's turn extend A's view to ``ctx``
                    start = len(p.ids) - p.prompt_len
                    p.mask += [0] * (len(ctx) - len(p.ids))
                    p.ids = list(ctx)
                    if p.spans and p.speakers[-1] == "B":
                        p.spans[-1] = [start, len(p.ids) - p.prompt_len]
                span = [len(p.ids) - p.prompt_len, len(p.ids) - p.prompt_len + len(reply)]
                p.logprobs += [0.0] * (len(p.ids) - p.prompt_len - len(p.logprobs)) + list(out_logprobs[:len(reply)])
                p.ids += reply
                p.mask += [1] * len(reply)
            p.turns.append(self.formatter.decode_response(reply))
            p.speakers.append(speaker)
            p.generated.append(True)
            p.prompts.append(self.tokenizer.decode(ctx, skip_special_tokens=True).strip())
            p.spans.append(span)

    @torch.no_grad()
    def _logprobs(self, lm, plays: list[_Play], temperature: float, batch_size: int) -> list[list[float]]:
        """Log-probs of the completion tokens under ``lm`` at ``temperature`` (TRL's convention), 0.0 on env tokens.
        Rows are right-padded, so every real token keeps the position it had when it was generated."""
        from trl.trainer.utils import selective_log_softmax

        from models.networks.transmitter import pad_batch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.formatter.end_token_id
        device = next(lm.parameters()).device
        out: list[list[float]] = []
        was_training = lm.training
        lm.eval()
        try:
            for start in range(0, len(plays), max(1, batch_size)):
                chunk = plays[start:start + max(1, batch_size)]
                ids, mask = pad_batch([p.ids for p in chunk], pad, side="right")
                logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (b, L, V)
                token_logps = selective_log_softmax(logits[:, :-1].float() / temperature, ids[:, 1:].to(device)).cpu()
                for row, p in zip(token_logps, chunk):
                    values = row[p.prompt_len - 1: len(p.ids) - 1].tolist()
                    out.append([v if m else 0.0 for v, m in zip(values, p.mask)])
        finally:
            lm.train(was_training)
        return out


class DialogueReward:
    """A p2bot reward as a TRL reward function over ``SelfPlayRollout`` dialogues (one completion = one dialogue).

    Every generated turn of every dialogue (both speakers', so dialogue-level and batch-normalised rewards see what
    they see in ``p2bot rl``) is scored in one call of ``reward(prompts=turn_prompts, completions=turn texts,
    **kwargs)`` with ``SelfPlayEnv.score``'s kwargs. A dialogue's reward is the mean of the non-None values of A's
    trained turns (those with a span in the completion); None (TRL: NaN, no advantage) when there are none.

    Args:
        reward: a p2bot reward (e.g. a ``rewards.Composite``), ``f(prompts, completions, **kwargs) -> list``.
        name: the name TRL logs it under (``rewards/<name>/mean``).
    """

    def __init__(self, reward, name: str = "p2bot"):
        self.reward, self.__name__ = reward, name

    def setup(self, accelerator) -> None:
        if hasattr(self.reward, "setup"):
            self.reward.setup(accelerator)

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        missing = [k for k in ENV_KEYS if k not in kwargs]
        if missing:
            raise ValueError(f"reward {self.__name__!r} needs the self-play keys {missing}: use SelfPlayRollout as the "
                             "trainer's rollout_func")
        rows: list[tuple[int, int]] = []  # (dialogue, turn) of every scored turn
        cols: dict[str, list] = {k: [] for k in ("prompts", "completions", "persona", "partner_persona", "history",
                                                 "turn", "speaker", "dialogue_id")}
        for i, turns in enumerate(kwargs["transcript"]):
            for t, text in enumerate(turns):
                if not kwargs["generated"][i][t]:
                    continue
                a = kwargs["speakers"][i][t] == "A"
                own, other = kwargs["persona"][i], kwargs["partner_persona"][i]
                rows.append((i, t))
                for key, value in (("prompts", kwargs["turn_prompts"][i][t]), ("completions", text),
                                   ("persona", own if a else other), ("partner_persona", other if a else own),
                                   ("history", list(turns[:t])), ("turn", t), ("speaker", kwargs["speakers"][i][t]),
                                   ("dialogue_id", kwargs["dialogue_id"][i])):
                    cols[key].append(value)
        scores = list(self.reward(**cols)) if rows else []
        if len(scores) != len(rows):
            raise ValueError(f"reward {self.__name__!r} returned {len(scores)} scores for {len(rows)} turns")
        per_dialogue: list[list[float]] = [[] for _ in completions]
        for (i, t), score in zip(rows, scores):
            if kwargs["speakers"][i][t] == "A" and kwargs["turn_spans"][i][t] is not None and score is not None:
                per_dialogue[i].append(float(score))
        return [sum(v) / len(v) if v else None for v in per_dialogue]


def trl_reward_funcs(specs: Any, weights: Sequence[float] | None = None, *, pool=None
                     ) -> tuple[list[DialogueReward], list[float]]:
    """p2bot reward specs (registry names, ``module:callable``, mappings: ``rewards.parse_reward_specs``) as TRL
    reward functions, one per spec so TRL logs each, and their weights (for ``GRPOConfig.reward_weights``).

    Each function wraps a one-component ``rewards.Composite`` (weight 1, the spec's ``normalize``), so values are
    checked and normalised as in ``p2bot rl``; TRL then sums them with the weights. ``weights`` overrides the specs'.
    """
    pool = pool if pool is not None else ScorerPool()
    funcs, out_weights, names = [], [], []
    for spec in parse_reward_specs(specs, weights):
        reward, weight = build_reward(spec, pool)
        name = spec.log_name or (spec.name if spec.name in registered_rewards() else reward_name(reward))
        names.append(name)
        if names.count(name) > 1:
            name = f"{name}_{names.count(name)}"
        funcs.append(DialogueReward(Composite([Component(name, reward, 1.0, spec.normalize)], pool=pool), name))
        out_weights.append(weight)
    if not funcs:
        raise ValueError("reward_funcs is empty: name at least one reward")
    return funcs, out_weights
