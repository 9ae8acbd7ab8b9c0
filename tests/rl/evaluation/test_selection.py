"""Checkpoint selection: guards against the baseline, the best eligible candidate, ties, nothing eligible."""

import pytest

from rl.evaluation.selection import SelectionRule, check, choose, selection_table


def comparison(hits, ppl_rel=0.0, copy=(0.02, 0.02), echo=(0.05, 0.05), hits_base=0.2):
    def pair(a, b):
        return {"a": a, "b": b, "diff": a - b, "rel": a / b - 1 if b else float("nan")}

    return {"perceive_hits1": pair(hits, hits_base), "judge_ppl": {**pair(15.0 * (1 + ppl_rel), 15.0), "rel": ppl_rel},
            "copy_rate": pair(*copy), "echo_rate": pair(*echo)}


def test_the_best_candidate_that_keeps_every_guard_is_chosen():
    rule = SelectionRule()
    candidates = [check("checkpoint-10", comparison(0.30), rule),
                  check("checkpoint-20", comparison(0.40, copy=(0.03, 0.02)), rule),  # copies more than the baseline
                  check("checkpoint-30", comparison(0.45, ppl_rel=0.12), rule),  # PPL +12% > +10%
                  check("checkpoint-40", comparison(0.35, echo=(0.05, 0.05)), rule)]  # echo equal: kept
    assert [c.eligible for c in candidates] == [True, False, False, True]
    assert candidates[1].violations == ["copy_rate 0.030 > baseline 0.020"]
    assert "judge PPL" in candidates[2].violations[0] and "+12.0%" in candidates[2].violations[0]
    chosen = choose(candidates)
    assert chosen.name == "checkpoint-40" and chosen.value == pytest.approx(0.35)
    table = selection_table(candidates, chosen, rule)
    assert "| checkpoint-40 |" in table and "**chosen**" in table.splitlines()[-1]
    assert "no: copy_rate 0.030 > baseline 0.020" in table


def test_ties_go_to_the_earlier_candidate_and_nothing_eligible_is_none():
    rule = SelectionRule()
    tied = [check(f"c{i}", comparison(0.3), rule) for i in range(3)]
    assert choose(tied).name == "c0"
    bad = [check("c0", comparison(0.5, copy=(0.05, 0.02)), rule), check("c1", comparison(0.5, ppl_rel=0.5), rule),
           check("c2", comparison(0.2), rule), check("c3", comparison(0.15), rule)]  # no gain over the baseline's 0.2
    assert choose(bad) is None
    assert bad[3].violations == ["perceive_hits1 0.150 vs baseline 0.200 (needs more than +0%)"]
    assert not check("c", comparison(0.22), SelectionRule(min_gain=0.2)).eligible  # +10% < the +20% asked
    assert check("c", comparison(0.1, hits_base=0.0), rule).eligible  # a baseline of 0: any value above it
    assert "no: " in selection_table(bad, None, rule)


def test_guards_are_configurable_and_checked():
    no_guards = SelectionRule(max_ppl_increase=None, no_higher_than_baseline=())
    assert check("c", comparison(0.5, ppl_rel=3.0, copy=(0.9, 0.0)), no_guards).eligible
    with pytest.raises(ValueError, match="unknown metric 'hits'"):
        SelectionRule(metric="hits")
    with pytest.raises(ValueError, match="not one that is better higher"):
        SelectionRule(metric="copy_rate")
    with pytest.raises(ValueError, match="min_gain"):
        SelectionRule(min_gain=-0.1)
    with pytest.raises(ValueError, match="max_ppl_increase"):
        SelectionRule(max_ppl_increase=-0.1)
    without_ppl = comparison(0.5)
    del without_ppl["judge_ppl"]
    with pytest.raises(ValueError, match="judge_ppl needs --judge_lm"):
        check("c", without_ppl, SelectionRule())
