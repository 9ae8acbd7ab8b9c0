"""The four "did RL help?" criteria decided on a comparison's numbers, and their per-policy table."""

from rl.evaluation.targets import check_gold_targets, check_targets, targets_table


def _c(a, b, rel, low, rel_low=None, rel_high=None):
    return {"a": a, "b": b, "diff": a - b, "low": low, "high": low + 1, "rel": rel,
            "rel_low": rel if rel_low is None else rel_low, "rel_high": rel if rel_high is None else rel_high}


WIN = {"perceive_hits1": _c(0.3, 0.2, 0.5, 0.04), "judge_ppl": _c(12.0, 15.0, -0.2, -4.0),
       "copy_rate": _c(0.01, 0.02, -0.5, -0.02), "echo_rate": _c(0.0, 0.05, -1.0, -0.07)}


def test_every_target_met_and_each_failure_on_its_own():
    assert [t.met for t in check_targets(WIN)] == [True] * 4
    cases = {"perceive_hits1": (_c(0.3, 0.2, 0.5, -0.01), 0), "judge_ppl": (_c(16.6, 15.0, 0.107, 0.1), 1),
             "copy_rate": (_c(0.03, 0.02, 0.5, -0.01), 2), "echo_rate": (_c(0.06, 0.05, 0.2, -0.01), 3)}
    for key, (value, index) in cases.items():
        met = [t.met for t in check_targets({**WIN, key: value})]
        assert met == [i != index for i in range(4)], key
    small = {**WIN, "perceive_hits1": _c(0.23, 0.2, 0.15, 0.01)}  # CI above 0 but under +20%
    assert check_targets(small)[0].met is False
    assert check_targets({})[0].met is None


def test_targets_table_one_row_per_policy():
    text = targets_table({"average": WIN, "seed0": {**WIN, "echo_rate": _c(0.06, 0.05, 0.2, -0.01)}})
    lines = text.splitlines()
    assert lines[0] == "| policy | Hits@1 ≥ +20%, CI > 0 | PPL < +10% | copy ≤ SFT | echo ≤ SFT | met |"
    assert lines[2].startswith("| average | +50.0% (+50.0 .. +50.0): met |") and lines[2].endswith("| 4 of 4 |")
    assert "0.060 vs 0.050: not met" in lines[3] and lines[3].endswith("| 3 of 4 |")


GOLD_OK = {"f1": _c(0.181, 0.185, -0.02, -0.01), "ppl": _c(20.5, 20.0, 0.025, -0.5),
           "hits1_nup": _c(0.41, 0.40, 0.025, -0.02)}


def test_gold_targets_each_failure_on_its_own_and_their_table():
    assert [t.met for t in check_gold_targets(GOLD_OK)] == [True] * 3
    cases = {"f1": (_c(0.170, 0.185, -0.08, -0.03), 0), "ppl": (_c(21.2, 20.0, 0.06, 0.2), 1),
             "hits1_nup": (_c(0.395, 0.40, -0.01, -0.03), 2)}
    for key, (value, index) in cases.items():
        assert [t.met for t in check_gold_targets({**GOLD_OK, key: value})] == [i != index for i in range(3)], key
    assert [t.met for t in check_gold_targets({})] == [None] * 3
    lines = targets_table({"seed0": GOLD_OK}, check=check_gold_targets).splitlines()
    assert lines[0] == "| policy | F1 ≥ SFT − 0.01 | gold PPL ≤ +5% | Hits@1 (NUP) ≥ SFT | met |"
    assert lines[2].endswith("| 3 of 3 |") and "0.410 vs 0.400: met" in lines[2]
