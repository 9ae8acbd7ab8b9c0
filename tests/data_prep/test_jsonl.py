import json

import pytest

from data_prep import DataFormatError, PersonaDialogue, read_dialogues, sample_data_path, write_jsonl


def test_sample_set_is_valid_and_sized():
    result = read_dialogues(sample_data_path())
    dialogues = result.dialogues
    assert len(dialogues) >= 40 and result.stats.skipped == 0
    for d in dialogues:
        assert 4 <= len(d.persona_a) <= 5 and 4 <= len(d.persona_b) <= 5
        assert 6 <= len(d.turns) <= 12
    assert len({d.dialogue_id for d in dialogues}) == len(dialogues)


def test_round_trip_keeps_every_field(tmp_path, parlai_dir):
    original = read_dialogues(parlai_dir / "valid_self_original.txt").dialogues
    out = tmp_path / "conv.jsonl"
    assert write_jsonl(original, out) == 2
    again = read_dialogues(out).dialogues
    assert [d.to_dict() for d in again] == [d.to_dict() for d in original]


def test_json_array(tmp_path):
    d = PersonaDialogue(["I sing."], ["I dance."], ["hi", "hey"])
    path = tmp_path / "x.json"
    path.write_text(json.dumps([d.to_dict()]))
    assert read_dialogues(path).dialogues[0].turns == ["hi", "hey"]


@pytest.mark.parametrize(
    "record, field",
    [
        ({"persona_a": ["a"], "turns": ["x", "y"]}, "persona_b"),
        ({"persona_a": ["a"], "persona_b": [""], "turns": ["x", "y"]}, "persona_b"),
        ({"persona_a": ["a"], "persona_b": ["b"], "turns": ["only one"]}, "turns"),
        ({"persona_a": ["a"], "persona_b": ["b"], "turns": ["x", "y"], "persona": 1}, "persona"),
        ({"persona_a": ["a"], "persona_b": ["b"], "turns": ["x", "y"], "first_speaker": "C"}, "first_speaker"),
        ({"persona_a": ["a"], "persona_b": ["b"], "turns": ["x", "y"], "candidates": [None]}, "candidates"),
    ],
    ids=["missing", "empty-persona", "unbalanced", "unknown-field", "bad-speaker", "candidates-length"],
)
def test_malformed_jsonl_names_line_and_field(tmp_path, record, field):
    path = tmp_path / "bad.jsonl"
    good = {"persona_a": ["a"], "persona_b": ["b"], "turns": ["x", "y"]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(record) + "\n")
    with pytest.raises(DataFormatError) as err:
        read_dialogues(path)
    assert err.value.location == "line 3" and err.value.field_name == field


def test_broken_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"persona_a": ["a"], \n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:line 1: field 'json'"):
        read_dialogues(path)
