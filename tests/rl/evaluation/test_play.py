"""Self-play evaluation: play() is seeded and paired, judge() tallies hand-built dialogues, eval_stats compares."""

import pytest

from data_prep.personas import persona_key
from models.networks.receiver import Receiver
from models.scoring.judges import PersonaJudge
from models.scoring.text_metrics import distinct_n
from rl.evaluation.play import Judges, JudgeSettings, PlayedDialogue, distractors_for, judge, play
from rl.evaluation.stats import (
    BY_KEY,
    compare,
    comparison_table,
    corpus_distinct,
    metric_values,
    samples_markdown,
    summarize,
)
from rl.selfplay import Dialogue, Sampling
from tests.rl.rl_fixtures import PromptFormatter, Transmitter

A1 = ["I have a dog named Max.", "I work as a nurse at the hospital.", "I love baking bread."]
B1 = ["I am a pilot.", "I live in Alaska.", "I collect old stamps."]
A2 = ["I play the violin in an orchestra.", "My favourite colour is green."]
B2 = ["I am a vegan.", "I run marathons every spring."]
POOL = [A1, B1, A2, B2, ["I drive a truck.", "I like country music."], ["I teach maths.", "I play chess."]]


@pytest.fixture(scope="module")
def judges():
    return Judges(PersonaJudge(Receiver.from_pretrained("embedded")), settings=JudgeSettings(num_candidates=6))


def hand_built() -> list[PlayedDialogue]:
    d1 = Dialogue("p1#0", "p1", A1, B1, ["hi! i have a dog named max.", "hi! i have a dog named max.",
                                         "I work as a nurse at the hospital", "cool."], list("ABAB"))
    d2 = Dialogue("p2#0", "p2", A2, B2, ["hello, I play violin in an orchestra", "", "nice to meet you", "I run a lot"],
                  list("ABAB"))
    return [PlayedDialogue(d1, [False, False, True, False], ("A", "B")), PlayedDialogue(d2, [False] * 4, ("A", "B"))]


def tally(ev, metric):
    num, den = ev.tallies[metric]
    return num.tolist(), den.tolist()


def test_judge_tallies_hand_built_dialogues(judges):
    ev = judge("m", hand_built(), judges, POOL)
    assert ev.units == ["p1", "p2"]
    # p1: A copies both lines (dog: 3/3 content words, nurse: 3/3), B copies nothing; p2: A's violin line has
    # {play, violin, orchestra} of {play, violin, orchestra}: a copy; B's "I run a lot" is {run} of {run, marathon, spring}
    assert tally(ev, "copy_rate") == ([2, 1], [4, 4])
    # echoes: p1 B's first line repeats A's; the first turn of a dialogue has no line to echo
    assert tally(ev, "echo_rate") == ([1, 0], [3, 3])
    assert tally(ev, "self_repeat_rate") == ([0, 0], [2, 2])
    assert tally(ev, "empty_rate") == ([0, 1], [4, 4])
    assert tally(ev, "cutoff_rate") == ([1, 0], [4, 4])
    assert tally(ev, "fact_coverage") == ([2, 1], [6, 4])  # p1 A: dog + nurse; p2 A: violin
    assert tally(ev, "num_candidates") == ([12, 12], [2, 2])  # 1 + 5 per judged speaker
    # perceivability per pair: the encoder's rank of each judged speaker's persona among its 6 candidates, summed
    expected = []
    for pd in hand_built():
        d, hits = pd.dialogue, []
        for speaker, own, other in (("A", d.persona_a, d.persona_b), ("B", d.persona_b, d.persona_a)):
            utts = [t for t, s in zip(d.turns, d.speakers) if s == speaker]
            hits.append(judges.persona.rank(utts, own, distractors_for(d.pair_id, speaker, own, other, POOL,
                                                                       judges.settings))[0])
        expected.append(hits)
    assert expected[0][0] == 1.0  # A of p1 states its persona: the untrained encoder ranks it first
    assert tally(ev, "perceive_hits1") == ([sum(h) for h in expected], [2, 2])
    assert "judge_nll" not in ev.tallies and "contradiction_persona" not in ev.tallies  # judges not given
    assert float(metric_values(ev, BY_KEY["copy_rate"])) == pytest.approx(3 / 8)
    # distinct-1 within pair p1: the normalised words of its four lines (articles dropped), 12 distinct of 19
    words_p1 = " ".join(["hi i have dog named max"] * 2 + ["i work as nurse at hospital", "cool"]).split()
    assert tally(ev, "distinct_1")[0][0] == len(set(words_p1)) == 12 and tally(ev, "distinct_1")[1][0] == 19
    utterances = [t for pd in hand_built() for t in pd.dialogue.turns]
    assert corpus_distinct(ev)["distinct_1"] == pytest.approx(distinct_n(utterances, 1))


def test_perceivability_is_also_tallied_over_speakers_whose_persona_training_never_saw(judges):
    seen = Judges(judges.persona, settings=JudgeSettings(num_candidates=6, seen_personas=frozenset(
        [persona_key([s.upper() for s in reversed(A1)])])))  # A1, in another order and case: seen
    ev = judge("m", hand_built(), seen, POOL)
    hits, judged = tally(ev, "perceive_hits1")
    unseen_hits, unseen = tally(ev, "perceive_hits1_unseen")
    assert unseen == [1, 2] and judged == [2, 2]  # p1: only B (A1 was seen); p2: both speakers
    p1_b = judge("m", [PlayedDialogue(hand_built()[0].dialogue, [False] * 4, ("B",))], judges, POOL)
    assert unseen_hits[0] == tally(p1_b, "perceive_hits1")[0][0] and unseen_hits[1] == hits[1]
    assert "perceive_hits1_unseen" not in judge("m", hand_built(), judges, POOL).tallies  # no seen set: not tallied


def test_distractors_are_disjoint_fixed_and_include_the_partner():
    cfg = JudgeSettings(num_candidates=4)
    pool = POOL + [["I love baking bread.", "I am tall."]]  # shares a sentence with A1: never a distractor of A1
    first = distractors_for("p1", "A", A1, B1, pool, cfg, seed=0)
    assert len(first) == 3 and first[0] == B1
    assert all(not set(map(str.lower, d)) & set(map(str.lower, A1)) for d in first)
    assert first == distractors_for("p1", "A", A1, B1, pool, cfg, seed=0)
    assert B1 not in distractors_for("p1", "A", A1, B1, pool, JudgeSettings(4, partner_as_distractor=False), seed=0)
    assert len(distractors_for("p1", "A", A1, B1, pool, JudgeSettings(num_candidates=50), seed=0)) == 5  # all eligible


def test_distractors_leave_out_a_shared_sentence_written_differently():
    """"i love baking bread" is A1's "I love baking bread.": that persona is no distractor of A1 (nor is B1 when
    the partner restates A1's sentence)."""
    variant = ["i  love BAKING bread", "I am tall."]
    got = distractors_for("p1", "A", A1, B1, POOL + [variant], JudgeSettings(num_candidates=50), seed=0)
    assert variant not in got and len(got) == 5
    partner = ["I am a pilot.", "i have a dog named max!"]
    assert partner not in distractors_for("p1", "A", A1, partner, POOL, JudgeSettings(num_candidates=50), seed=0)


def plainer() -> list[PlayedDialogue]:
    """``hand_built`` with one persona copy fewer per pair and no echo: p1's A keeps only the nurse line."""
    d1 = Dialogue("p1#0", "p1", A1, B1, ["hi! how are you?", "fine, and you?", "I work as a nurse at the hospital",
                                         "cool."], list("ABAB"))
    d2 = Dialogue("p2#0", "p2", A2, B2, ["hello there", "hey", "nice to meet you", "I run a lot"], list("ABAB"))
    return [PlayedDialogue(d1, [False] * 4, ("A", "B")), PlayedDialogue(d2, [False] * 4, ("A", "B"))]


def test_compare_is_paired_and_tables_render(judges):
    a, b = judge("rl", hand_built(), judges, POOL), judge("sft", plainer(), judges, POOL)
    assert tally(a, "copy_rate") == ([2, 1], [4, 4]) and tally(b, "copy_rate") == ([1, 0], [4, 4])
    assert tally(b, "echo_rate") == ([0, 0], [3, 3]) and tally(b, "empty_rate") == ([0, 0], [4, 4])
    out = compare(a, b, num_samples=200)
    # copy: 3/8 vs 1/8; every pair has exactly one copy more in a, so every paired resample differs by 1/4
    copy = out["copy_rate"]
    assert (copy["a"], copy["b"], copy["diff"]) == pytest.approx((3 / 8, 1 / 8, 1 / 4))
    assert copy["low"] == pytest.approx(1 / 4) and copy["high"] == pytest.approx(1 / 4)
    # relative: 3/8 / 1/8 - 1 = 2; resamples (p1, p1) give 2/4 / 1/4 - 1 = 1, those without p1 have b = 0 (dropped)
    assert copy["rel"] == pytest.approx(2.0) and (copy["rel_low"], copy["rel_high"]) == pytest.approx((1.0, 2.0))
    # echo: 1/6 vs 0, only p1 echoes: resamples range from (p2, p2) = 0 to (p1, p1) = 1/3
    echo = out["echo_rate"]
    assert echo["diff"] == pytest.approx(1 / 6) and (echo["low"], echo["high"]) == pytest.approx((0.0, 1 / 3))
    empty = out["empty_rate"]  # p2's B said nothing in a: 1/8 vs 0, resamples from (p1, p1) = 0 to (p2, p2) = 1/4
    assert empty["diff"] == pytest.approx(1 / 8) and (empty["low"], empty["high"]) == pytest.approx((0.0, 1 / 4))
    table = comparison_table("rl", "sft", out)
    assert "| copy rate" in table and "| 0.125 | 0.375 | +0.250 (+0.250 .. +0.250) | +200.0% (+100.0 .. +200.0) |" in table
    summary = summarize(a, num_samples=200)
    assert summary["echo_rate"]["value"] == pytest.approx(1 / 6)
    assert summary["echo_rate"]["low"] <= 1 / 6 <= summary["echo_rate"]["high"]
    b.units = ["p2", "p1"]
    with pytest.raises(ValueError, match="same persona pairs"):
        compare(a, b)
    assert "### rl" in samples_markdown([a], 1) and "[cut off]" in samples_markdown([a], 1)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = Transmitter.from_pretrained(str(tiny_model_dir)).eval()
    return model, PromptFormatter(model.tokenizer, max_history_tokens=48)


PAIRS = [{"pair_id": f"q{i}", "persona_a": A1 if i % 2 else A2, "persona_b": B1 if i % 2 else B2} for i in range(3)]


def test_play_is_seeded_batched_and_judges_both_speakers(tiny):
    model, fmt = tiny
    kw = dict(dialogues_per_pair=2, exchanges=2, sampling=Sampling(True, 1.0), response_length=5, seed=7, batch_pairs=2)
    first, second = play(model, PAIRS, fmt, **kw), play(model, PAIRS, fmt, **kw)
    assert [p.dialogue.turns for p in first] == [p.dialogue.turns for p in second]
    assert sorted(p.dialogue.dialogue_id for p in first) == sorted(f"q{i}#{k}" for i in range(3) for k in range(2))
    assert all(p.judged == ("A", "B") and p.dialogue.speakers == list("ABAB") and len(p.cut_off) == 4 for p in first)
    other = play(model, PAIRS, fmt, **{**kw, "seed": 8})
    assert [p.dialogue.turns for p in other] != [p.dialogue.turns for p in first]
    # a random 5-token policy never closes its turn: every turn is cut off
    assert all(all(p.cut_off) for p in first if all(len(t) for t in p.dialogue.turns))


def test_play_with_a_fixed_partner_judges_only_a(tiny, tiny_model_dir, judges):
    model, fmt = tiny
    partner = Transmitter.from_pretrained(str(tiny_model_dir)).eval()
    played = play(model, PAIRS[:1], fmt, dialogues_per_pair=1, exchanges=1, partner=partner, response_length=4,
                  sampling=Sampling(False))
    assert played[0].judged == ("A",) and played[0].dialogue.speakers == ["A", "B"]
    ev = judge("m", played, judges, POOL)
    assert tally(ev, "mean_words")[1] == [1] and tally(ev, "perceive_hits1")[1] == [1]  # A's one turn, A's one side
