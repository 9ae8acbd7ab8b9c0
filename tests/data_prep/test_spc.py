import csv

import pytest

from data_prep import DataFormatError, read_dialogues

HEADER = "user 1 personas,user 2 personas,Best Generated Conversation\n"


def _write(tmp_path, rows, header=HEADER):
    path = tmp_path / "spc.csv"
    with open(path, "w", newline="") as f:
        f.write(header)
        csv.writer(f).writerows(rows)
    return path


def test_clean_row(tmp_path):
    path = _write(tmp_path, [["I bake.\nI knit.", "I run.\nI swim.", "User 1: Hi!\nUser 2: Hello!\nUser 1: Bake?"]])
    result = read_dialogues(path)
    (d,) = result.dialogues
    assert d.persona_a == ["I bake.", "I knit."] and d.persona_b == ["I run.", "I swim."]
    assert d.turns == ["Hi!", "Hello!", "Bake?"] and d.first_speaker == "A"
    assert (result.stats.rows_read, result.stats.repaired, result.stats.skipped) == (1, 0, 0)


def test_messy_rows_are_repaired_or_skipped(tmp_path):
    convo = "*User 1:* Hi!\n[A few minutes later]\nUser 2: Hello!\nUser 2: How are you?\nUser 1: Fine.\nIngredients: flour"
    rows = [
        ["I bake.", "I run.", convo],
        ["I bake.", "I run.", "The next day\nUser 1: Hi\nUser 2: Yo"],
        ["I bake.", "I run.", "User 2: I start.\nUser 1: ok"],
    ]
    result = read_dialogues(_write(tmp_path, rows))
    assert result.stats.rows_read == 3 and result.stats.skipped == 1 and result.stats.repaired == 1
    d, d3 = result.dialogues
    assert d.turns == ["Hi!", "Hello! How are you?", "Fine. Ingredients: flour"]
    assert d3.first_speaker == "B" and d3.speaker(0) == "B"
    assert any("row 2" in w and "skipped" in w for w in result.stats.warnings)


def test_strict_turns_a_repair_into_an_error(tmp_path):
    path = _write(tmp_path, [["I bake.", "I run.", "User 1: Hi\nUser 1: again\nUser 2: Yo"]])
    with pytest.raises(DataFormatError, match=r"row 1 \(line 2\): field 'best generated conversation'.*--strict"):
        read_dialogues(path, strict=True)


@pytest.mark.parametrize(
    "header, rows, location, field",
    [
        ("user 1 personas,Best Generated Conversation\n", [["I bake.", "User 1: a\nUser 2: b"]], "line 1 (header)", "user 2 personas"),
        (HEADER, [["I bake.", "  ", "User 1: a\nUser 2: b"]], "row 1 (line 2)", "user 2 personas"),
    ],
    ids=["missing-column", "empty-persona"],
)
def test_malformed_spc(tmp_path, header, rows, location, field):
    with pytest.raises(DataFormatError) as err:
        read_dialogues(_write(tmp_path, rows, header))
    assert (err.value.location, err.value.field_name) == (location, field)


def test_truncated_quote_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + '"I bake.","I run.","User 1: hi\nUser 2: yo\n')
    with pytest.raises(DataFormatError, match=r"field 'csv'"):
        read_dialogues(path)


def test_unbalanced_turns_skip(tmp_path):
    result = read_dialogues(_write(tmp_path, [["I bake.", "I run.", "User 1: only me"]]))
    assert result.dialogues == [] and result.stats.skipped == 1
    assert "unbalanced turns" in result.stats.warnings[0]


def test_shared_spc_split_counts(spc_valid_path):
    result = read_dialogues(spc_valid_path)
    with open(spc_valid_path, newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    assert result.stats.rows_read == len(raw) == 1000
    assert result.stats.dialogues_kept + result.stats.skipped == len(raw)
    # DESIGN: roughly 3% of rows need repair; all but a handful can be kept.
    assert 0 < result.stats.repaired < 0.06 * len(raw) and result.stats.skipped <= 5
    first = result.dialogues[0]
    assert first.persona_a[0] == "I love to bake cookies." and first.turns[:2] == ["Hi!", "Hello!"]
