import pytest
import torch

from rl.selfplay import Sampling, SelfPlayEnv
from tests.rl.rl_fixtures import PromptFormatter, Transmitter, generate

PAIRS = [
    {"pair_id": "p0", "persona_a": ["i love dogs.", "i live in paris."], "persona_b": ["i am a nurse."], "first_utterance": "hi!"},
    {"pair_id": "p1", "persona_a": ["i play chess."], "persona_b": ["i like tea.", "i have two cats."], "first_utterance": "hey"},
    {"pair_id": "p2", "persona_a": ["i run."], "persona_b": ["i cook."], "first_utterance": "yo"},
]


class Spy:
    """A generate_fn that records who generated with which settings, and delegates to the real one."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, contexts, **kw):
        self.calls.append((model, [list(c) for c in contexts], kw))
        return generate(model, contexts, **kw)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    torch.manual_seed(0)
    return Transmitter.from_pretrained(str(tiny_model_dir)).eval()


@pytest.fixture(scope="module")
def formatter(policy):
    return PromptFormatter(policy.tokenizer, max_history_tokens=64)


def test_rollout_alternates_speakers_and_builds_contexts(policy, formatter):
    spy = Spy()
    env = SelfPlayEnv(PAIRS, formatter, pairs_per_step=2, rollouts_per_pair=3, response_length=6, generate_fn=spy,
                      sampling_a=Sampling(True, 0.7, 5, 0.9), sampling_b=Sampling(False))
    batch = env.rollout(policy, step=0, num_exchanges=2)
    assert len(batch.dialogues) == 6 and len(batch.rollouts) == 6 * 4
    assert [c[2]["temperature"] for c in spy.calls] == [0.7, 1.0, 0.7, 1.0]
    assert [c[2]["do_sample"] for c in spy.calls] == [True, False, True, False]
    assert all(c[2]["max_new_tokens"] == 6 for c in spy.calls)
    for d in batch.dialogues:
        assert d.speakers == ["A", "B", "A", "B"] and len(d.turns) == 4
    by_dialogue = {}
    for r in batch.rollouts:
        by_dialogue.setdefault(r.info["dialogue_id"], []).append(r)
    d0 = batch.dialogues[0]
    turns = by_dialogue[d0.dialogue_id]
    for t, r in enumerate(turns):
        own = d0.persona_a if r.info["speaker"] == "A" else d0.persona_b
        assert r.info["turn"] == t and r.info["persona"] == own and r.info["history"] == d0.turns[:t]
        assert r.query_ids == formatter.encode_context(own, d0.turns[:t])
        # B decodes greedily: its turns are not samples of the policy, so they are never trained
        assert len(r.response_ids) <= 6 and r.trainable == (r.info["speaker"] == "A")
        assert r.temperature == (0.7 if r.info["speaker"] == "A" else 1.0)
        assert r.group == (d0.pair_id, t, r.info["speaker"])
    assert len({r.info["dialogue_id"] for r in batch.rollouts}) == 6


def test_frozen_partner_speaks_as_b_and_is_not_trained(policy, formatter, tiny_model_dir):
    partner = Transmitter.from_pretrained(str(tiny_model_dir)).eval()
    spy = Spy()
    env = SelfPlayEnv(PAIRS, formatter, pairs_per_step=1, rollouts_per_pair=2, response_length=4, partner=partner,
                      generate_fn=spy)
    batch = env.rollout(policy, step=0, num_exchanges=1)
    assert [c[0] is partner for c in spy.calls] == [False, True]
    assert [r.trainable for r in batch.rollouts] == [True, True, False, False]
    assert len(batch.trainable) == 2


def test_first_utterance_opens_and_b_replies(policy, formatter):
    env = SelfPlayEnv(PAIRS, formatter, pairs_per_step=1, rollouts_per_pair=1, response_length=4, use_first_utterance=True,
                      generate_fn=generate)
    batch = env.rollout(policy, step=0, num_exchanges=1)
    pair = env.pairs_for_step(0)[0]
    assert batch.dialogues[0].turns[0] == pair["first_utterance"]
    assert [r.info["speaker"] for r in batch.rollouts] == ["B", "A"]


def test_pairs_per_process_are_deterministic_and_disjoint():
    pairs = [dict(p, pair_id=f"q{i}") for i, p in enumerate(PAIRS * 2)]  # 6 distinct pairs

    class Fmt:
        tokenizer = None

    envs = [SelfPlayEnv(pairs, Fmt(), pairs_per_step=1, seed=3, process_index=i, num_processes=2) for i in range(2)]
    seen = [p["pair_id"] for step in range(3) for env in envs for p in env.pairs_for_step(step)]
    assert sorted(seen) == sorted(p["pair_id"] for p in pairs)  # one pass covers every pair exactly once
    assert [p["pair_id"] for p in envs[0].pairs_for_step(1)] == [p["pair_id"] for p in envs[0].pairs_for_step(1)]


def test_score_passes_selfplay_kwargs_and_components(policy, formatter):
    seen = {}

    def reward(prompts, completions, **kw):
        seen.update(kw, prompts=prompts, completions=completions)
        reward.last_components = {"length": [float(len(c)) for c in completions], "one": [1.0] * len(completions)}
        return [float(len(c)) + 1.0 if kw["speaker"][i] == "A" else None for i, c in enumerate(completions)]

    env = SelfPlayEnv(PAIRS, formatter, reward, pairs_per_step=1, rollouts_per_pair=2, response_length=4,
                      generate_fn=generate)
    batch = env.rollout(policy, step=0, num_exchanges=1)
    env.score(batch)
    for key in ("persona", "partner_persona", "history", "turn", "speaker", "dialogue_id"):
        assert len(seen[key]) == len(batch.rollouts)
    assert seen["completions"] == [r.response_text for r in batch.rollouts]
    a_turns = [r for r in batch.rollouts if r.info["speaker"] == "A"]
    assert all(r.score == len(r.response_text) + 1.0 and r.components["one"] == 1.0 for r in a_turns)
    # "not applicable" turns keep their place (every process trains on as many rows) but carry no weight
    assert all(r.score is None and r.trainable for r in batch.rollouts if r.info["speaker"] == "B")


class PrefillWidth:
    """Records the width of the first forward of every ``generate`` call (its prefill)."""

    def __init__(self, model):
        self.widths, self._fresh = [], True
        model.lm.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if self._fresh:
            self.widths.append(kwargs["input_ids"].shape[1])
            self._fresh = False

    def next_call(self):
        self._fresh = True


def test_kv_cache_reuse_changes_no_token_and_encodes_less(tiny_model_dir, formatter):
    """Greedy self-play over 3 exchanges: the same transcripts and rollouts with and without cross-turn reuse, and
    from each speaker's second turn on, the prefill covers only the tokens added since its previous turn."""
    greedy = Sampling(False)
    batches, widths = {}, {}
    for reuse in (False, True):
        model = Transmitter.from_pretrained(str(tiny_model_dir)).eval()
        probe = PrefillWidth(model)
        env = SelfPlayEnv(PAIRS, formatter, pairs_per_step=3, rollouts_per_pair=1, response_length=8, sampling_a=greedy,
                          sampling_b=greedy, reuse_kv_cache=reuse)
        real = model.lm.generate

        def generate_and_mark(*args, _real=real, _probe=probe, **kw):
            _probe.next_call()
            return _real(*args, **kw)

        model.lm.generate = generate_and_mark
        batches[reuse] = env.rollout(model, step=0, num_exchanges=3)
        widths[reuse] = probe.widths
    plain, reused = batches[False], batches[True]
    assert [d.turns for d in plain.dialogues] == [d.turns for d in reused.dialogues]
    assert [r.response_ids for r in plain.rollouts] == [r.response_ids for r in reused.rollouts]
    assert [r.query_ids for r in plain.rollouts] == [r.query_ids for r in reused.rollouts]
    assert len(widths[True]) == len(widths[False]) == 6
    assert widths[True][:2] == widths[False][:2]  # first turn of each speaker: nothing to reuse
    assert all(w < p for w, p in zip(widths[True][2:], widths[False][2:])), widths


@pytest.mark.parametrize("backend", ["static", "continuous"])
def test_other_generation_backends_play_the_same_greedy_dialogues(policy, formatter, backend):
    kw = dict(pairs_per_step=2, rollouts_per_pair=1, response_length=5, sampling_a=Sampling(False),
              sampling_b=Sampling(False))
    hf = SelfPlayEnv(PAIRS, formatter, **kw).rollout(policy, step=0, num_exchanges=2)
    other = SelfPlayEnv(PAIRS, formatter, generation_backend=backend, **kw).rollout(policy, step=0, num_exchanges=2)
    assert [d.turns for d in other.dialogues] == [d.turns for d in hf.dialogues]
    assert [r.response_ids for r in other.rollouts] == [r.response_ids for r in hf.rollouts]
