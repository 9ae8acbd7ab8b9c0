from pathlib import Path

import pytest
import yaml

from rewards import (
    CoherenceReward,
    FluencyReward,
    PersonaReward,
    RepetitionReward,
    RewardError,
    build_composite,
    build_reward,
    parse_reward_specs,
    registered_rewards,
    resolve_callable,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "launch" / "examples" / "length_reward.py"


class StubPool:
    """Stands in for ScorerPool: built-ins only store it until they are called."""

    def setup(self, accelerator):
        self.device = accelerator.device


def test_builtins_are_registered_with_default_weights():
    assert {"fluency", "coherence", "persona", "repetition"} <= set(registered_rewards())
    pool = StubPool()
    expected = {"fluency": (FluencyReward, 0.5), "coherence": (CoherenceReward, 0.1),
                "persona": (PersonaReward, 0.5), "repetition": (RepetitionReward, -0.1)}
    for name, (cls, weight) in expected.items():
        reward, w = build_reward(name, pool)
        assert isinstance(reward, cls) and reward.pool is pool and w == weight and reward.__name__ == name


def test_args_reach_the_builtin():
    reward, w = build_reward({"name": "persona", "weight": 2.0, "args": {"mutual": True, "gamma": 0.25}}, StubPool())
    assert reward.mutual and reward.gamma == 0.25 and reward.needs_dialogue and w == 2.0


def test_module_and_file_references(tmp_path):
    fn = resolve_callable("rewards.base:batch_normalize")
    assert fn([1.0, 3.0]) == pytest.approx([-1.0, 1.0])
    length, w = build_reward({"name": f"{EXAMPLE}:length_reward", "args": {"target_words": 2}})
    assert w == 1.0 and length.__name__ == "length_reward"
    assert length(["p"], ["two words"]) == [1.0]
    keyword, _ = build_reward({"name": f"{EXAMPLE}:KeywordReward", "args": {"keywords": ["dog", "cat"]}})
    assert keyword(["p"], [[{"role": "assistant", "content": "My dog and cat"}]]) == [2.0]


@pytest.mark.parametrize(("ref", "message"), [
    ("no_such_pkg_p2bot.rewards:f", "reward module 'no_such_pkg_p2bot.rewards' failed to import: ModuleNotFoundError"),
    ("rewards.base:nope", "reward module 'rewards.base' has no attribute 'nope'"),
    ("unknown_reward", "neither a registered reward"),
    ("rewards.registry:NORMALIZE", "not a callable"),
])
def test_bad_references_name_the_module(ref, message):
    with pytest.raises(RewardError, match=message):
        build_reward(ref)


def test_broken_reward_file_names_the_file(tmp_path):
    bad = tmp_path / "broken_reward.py"
    bad.write_text("import definitely_not_installed_p2bot\n")
    with pytest.raises(RewardError, match=f"reward file {bad} failed to import: ModuleNotFoundError"):
        build_reward(f"{bad}:f")
    with pytest.raises(RewardError, match="does not exist"):
        build_reward(f"{tmp_path / 'missing.py'}:f")


def test_a_bad_reward_file_is_named_when_it_misbehaves(tmp_path):
    bad = tmp_path / "nan_reward.py"
    bad.write_text("def short(prompts, completions, **kw):\n    return [1.0]\n\n"
                   "def nan(prompts, completions, **kw):\n    return [float('nan')] * len(completions)\n")
    comp = build_composite([f"{bad}:short", f"{bad}:nan"], pool=StubPool())
    with pytest.raises(RewardError, match=f"reward 'short' \\({bad}:short\\) returned 1 values for 2 completions"):
        comp(["p", "q"], ["x", "y"])
    with pytest.raises(RewardError, match=f"reward 'nan' \\({bad}:nan\\) returned a non-finite value"):
        build_composite([f"{bad}:nan"], pool=StubPool())(["p"], ["x"])


def test_wrong_constructor_args_name_the_reward():
    with pytest.raises(RewardError, match="'persona': cannot build it with args \\['bogus'\\]"):
        build_reward({"name": "persona", "args": {"bogus": 1}}, StubPool())


def test_spec_parsing_and_weight_precedence():
    specs = parse_reward_specs(["persona", {"name": "fluency", "normalize": "batch"}], weights=[0.3, 0.7])
    assert [(s.name, s.weight, s.normalize) for s in specs] == [("persona", 0.3, "none"), ("fluency", 0.7, "batch")]
    assert parse_reward_specs({"rewards": ["persona"]})[0].name == "persona"
    with pytest.raises(ValueError, match="reward_weights has 1 entries but reward_funcs has 2"):
        parse_reward_specs(["a", "b"], weights=[1.0])
    with pytest.raises(ValueError, match="weight 0.5 in reward_funcs but 0.2 in reward_weights"):
        parse_reward_specs([{"name": "a", "weight": 0.5}], weights=[0.2])
    with pytest.raises(ValueError, match="normalize"):
        parse_reward_specs([{"name": "a", "normalize": "rank"}])
    with pytest.raises(ValueError, match="unknown keys \\['wieght'\\]"):
        parse_reward_specs([{"name": "a", "wieght": 1.0}])


def test_custom_reward_yaml_swaps_in_the_user_reward(monkeypatch):
    monkeypatch.chdir(REPO)  # the YAML names the example by a path relative to the repository root
    cfg = yaml.safe_load((REPO / "launch" / "configs" / "experiments" / "custom_reward.yaml").read_text())
    pool = StubPool()
    comp = build_composite(cfg["reward_funcs"], cfg.get("reward_weights"), pool=pool)
    assert comp.weights == {"persona": 0.5, "fluency": 0.5, "coherence": 0.1, "repetition": -0.1, "length": 0.2}
    assert comp.terms[0].reward.mutual and comp.terms[0].normalize == "batch" and comp.needs_dialogue
    length = comp.terms[-1].reward
    assert length(["p"], ["a b c d e f g h i j k l"]) == [1.0]
