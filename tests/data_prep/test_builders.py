from data_prep import (
    PersonaDialogue,
    build_receiver_examples,
    build_selfplay_pairs,
    build_transmitter_examples,
    read_dialogues,
    sample_data_path,
)


def _dialogues():
    return read_dialogues(sample_data_path()).dialogues


def test_transmitter_examples_cover_every_turn_with_history():
    dialogues = _dialogues()
    ds = build_transmitter_examples(dialogues, num_distractors=3, seed=1)
    assert len(ds) == sum(len(d.turns) for d in dialogues)
    row = ds[3]
    d = dialogues[0]
    assert row["history"] == d.turns[:3] and row["response"] == d.turns[3]
    assert row["speaker"] == "B" and row["persona"] == d.persona_b and row["partner_persona"] == d.persona_a
    assert len(row["distractors"]) == 3 and row["response"] not in row["distractors"]
    own = set(d.turns)
    assert not own & set(ds[0]["distractors"])  # sampled from other dialogues


def test_transmitter_distractors_prefer_candidates(parlai_dir):
    dialogues = read_dialogues(parlai_dir / "valid_self_original.txt").dialogues
    ds = build_transmitter_examples(dialogues, num_distractors=2, seed=0)
    assert set(ds["speaker"]) == {"B"}  # speaker A has no persona in a `self` file
    row = ds[0]
    assert set(row["distractors"]) <= set(dialogues[0].candidates[1])


def test_builders_are_deterministic_and_cached(cache_env):
    dialogues = _dialogues()
    a = build_receiver_examples(dialogues, num_negatives=19, seed=3, cache_dir=cache_env)
    b = build_receiver_examples(dialogues, num_negatives=19, seed=3, cache_dir=cache_env)
    c = build_receiver_examples(dialogues, num_negatives=19, seed=4, cache_dir=None)
    assert a.to_list() == b.to_list() and a.to_list() != c.to_list()
    assert len(list(cache_env.iterdir())) == 1
    row = a[0]
    assert len(row["negative_personas"]) == 19 and row["persona"] not in row["negative_personas"]


def test_selfplay_pairs():
    dialogues = _dialogues() + [PersonaDialogue([], ["I sing."], ["a", "b"], dialogue_id="nope")]
    ds = build_selfplay_pairs(dialogues, with_first_utterance=True, seed=0)
    assert len(ds) == len(dialogues) - 1 and "nope" not in ds["pair_id"]
    by_id = {d.dialogue_id: d for d in dialogues}
    row = ds[0]
    assert row["persona_a"] == by_id[row["pair_id"]].persona_a
    assert row["first_utterance"] == by_id[row["pair_id"]].turns[0]


def test_receiver_distractors_can_come_from_other_dialogues(cache_env):
    import pytest

    dialogues = _dialogues()
    small, others = dialogues[:3], dialogues[3:]
    with pytest.raises(ValueError, match="could not draw 19 distinct distractors"):
        build_receiver_examples(small, num_negatives=19)
    rows = build_receiver_examples(small, num_negatives=19, distractor_dialogues=others, cache_dir=cache_env).to_list()
    assert {r["dialogue_id"] for r in rows} == {d.dialogue_id for d in small}  # distractor dialogues give no rows
    by_id = {d.dialogue_id: d for d in small}
    for r in rows:
        own = by_id[r["dialogue_id"]]
        assert len(r["negative_personas"]) == 19
        assert own.persona_a not in r["negative_personas"] and own.persona_b not in r["negative_personas"]
    build_receiver_examples(small, num_negatives=19, distractor_dialogues=others[:-1], cache_dir=cache_env)
    assert len(list(cache_env.glob("receiver-*"))) == 2  # a different distractor pool is a different cache entry


def test_receiver_negatives_share_no_sentence_with_the_own_persona():
    shared = "I have a dog."
    dialogues = [PersonaDialogue([shared, f"I am {i} years old."], [f"I play sport {i}."], ["hi", "hello"],
                                 dialogue_id=f"d{i}") for i in range(6)]
    dialogues += [PersonaDialogue([f"I like colour {i}."], [f"I drive car {i}."], ["hi", "hello"], dialogue_id=f"e{i}")
                  for i in range(6)]
    rows = build_receiver_examples(dialogues, num_negatives=8, seed=0).to_list()
    for r in rows:
        assert all(set(n).isdisjoint(r["persona"]) for n in r["negative_personas"])
    # every dialogue "d*" speaker A has the shared sentence: none of them is a negative for another
    a_rows = [r for r in rows if shared in r["persona"]]
    assert a_rows and all(shared not in n for r in a_rows for n in r["negative_personas"])


def test_receiver_negatives_share_no_sentence_when_written_differently():
    """"I have a dog." and "i  have a DOG" are one fact: a persona holding either is no negative for the other."""
    dialogues = [PersonaDialogue(["I have a dog.", f"I am {i} years old."], [f"I play sport {i}."], ["hi", "hello"],
                                 dialogue_id=f"d{i}") for i in range(4)]
    dialogues += [PersonaDialogue(["i  have a DOG", f"I like colour {i}."], [f"I drive car {i}."], ["hi", "hello"],
                                  dialogue_id=f"e{i}") for i in range(4)]
    rows = build_receiver_examples(dialogues, num_negatives=6, seed=0).to_list()
    dog_rows = [r for r in rows if r["turn_index"] == 0]  # speaker A of every dialogue holds the dog sentence
    assert len(dog_rows) == 8
    for r in dog_rows:  # the 6 negatives are the other dialogues' B personas (sport / car), never a dog persona
        negs = r["negative_personas"]
        assert not any("dog" in s.lower() for n in negs for s in n)
        assert len({tuple(n) for n in negs}) == 6


def test_cache_entry_written_first_by_another_process_is_used(tmp_path):
    from datasets import Dataset

    from data_prep import builders

    rows = [{"x": 1}]
    path = tmp_path / f"t-{builders._fingerprint('t', [], {})}"

    def build():  # another process finishes the same entry while this one builds
        Dataset.from_list([{"x": 2}]).save_to_disk(str(path))
        return rows

    ds = builders._cached("t", [], {}, tmp_path, build)
    assert ds.to_list() == [{"x": 2}]  # the entry already there is kept and read
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary directory left behind


def test_cache_write_failure_other_than_the_race_raises(tmp_path, monkeypatch):
    import errno

    import pytest

    from data_prep import builders

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(builders.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        builders._cached("t", [], {}, tmp_path, lambda: [{"x": 1}])
    assert list(tmp_path.iterdir()) == []  # the temporary copy is removed
