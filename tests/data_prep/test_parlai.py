import pytest

from data_prep import DataFormatError, read_dialogues
from data_prep.parlai import parlai_variant


def test_self_file_personas_turns_and_candidates(parlai_dir):
    dialogues = read_dialogues(parlai_dir / "valid_self_original.txt").dialogues
    assert len(dialogues) == 2
    d = dialogues[0]
    assert d.persona_a == [] and d.persona_b[0] == "i grow tomatoes on my balcony."
    assert d.first_speaker == "A" and len(d.turns) == 6
    assert d.turns[1] == "pretty good , just got back from the bakery ."
    assert d.candidates[0] is None and len(d.candidates[1]) == 3 and d.turns[1] in d.candidates[1]
    assert d.dialogue_id == "valid_self_original.txt:1"
    assert d.meta == {"persona_visibility": "self", "persona_version": "original"}


def test_silence_makes_the_persona_speaker_open(parlai_dir):
    d = read_dialogues(parlai_dir / "valid_self_original.txt").dialogues[1]
    assert d.first_speaker == "B"
    assert d.turns[0].startswith("hi ! i just finished cello practice")
    assert d.speaker(0) == "B" and d.persona("B")[0].startswith("i play the cello")
    assert "__SILENCE__" not in d.turns


def test_both_revised_reads_partner_persona(parlai_dir):
    (d,) = read_dialogues(parlai_dir / "valid_both_revised.txt").dialogues
    assert d.persona_a == ["i teach chemistry to teenagers.", "i run a marathon every spring."]
    assert len(d.persona_b) == 2 and d.candidates is None
    assert d.meta["persona_version"] == "revised" and d.meta["persona_visibility"] == "both"


def test_none_file_has_no_persona(parlai_dir):
    (d,) = read_dialogues(parlai_dir / "valid_none_original.txt").dialogues
    assert d.persona_a == d.persona_b == [] and len(d.turns) == 4


@pytest.mark.parametrize(
    "name, expected", [("train_self_revised.txt", ("self", "revised")), ("valid_other_original.txt", ("other", "original"))]
)
def test_variant_from_file_name(name, expected):
    meta = parlai_variant(name)
    assert (meta["persona_visibility"], meta["persona_version"]) == expected


@pytest.mark.parametrize(
    "content, location, field",
    [
        ("1 your persona: \n2 hi\tthere\n", "line 1", "your persona"),
        ("1 your persona: i sing.\n2 hello there , friend\n", "line 2", "label"),
        ("1 your persona: i sing.\n3 hi\tyo\n", "line 2", "line number"),
        ("your persona: i sing.\n", "line 1", "line number"),
        ("1 hi\tyo\t\ta|b\n", "line 1", "candidates"),
        ("1 hi\tyo\n2 your persona: i sing.\n", "line 2", "your persona"),
    ],
    ids=["empty-persona", "unbalanced-turn", "skipped-number", "no-number", "gold-not-in-candidates", "late-persona"],
)
def test_malformed_parlai_names_file_line_and_field(tmp_path, content, location, field):
    path = tmp_path / "train_self_original.txt"
    path.write_text(content)
    with pytest.raises(DataFormatError) as err:
        read_dialogues(path)
    assert err.value.path == str(path) and err.value.location == location and err.value.field_name == field
    assert str(path) in str(err.value) and location in str(err.value)


def test_bad_encoding_names_the_line(tmp_path):
    path = tmp_path / "x_self_original.txt"
    path.write_bytes(b"1 your persona: i sing.\n2 caf\xe9 ?\tyes\n")
    with pytest.raises(DataFormatError, match=r"line 2: field 'encoding'"):
        read_dialogues(path)
