import json
from pathlib import Path

import datasets
import pytest
from datasets import Dataset

from data_prep import DataFormatError, read_dialogues
from data_prep.hf import parse_column_mapping

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "personachat_hub"
LAYOUT_FILES = {"personachat_turns": "valid_turns.jsonl", "personachat_dialogues": "valid_dialogues.jsonl"}


def _rows(layout):
    return [json.loads(line) for line in (HUB / LAYOUT_FILES[layout]).read_text().splitlines()]


def _dataset(layout, rows=None):
    return Dataset.from_list(rows if rows is not None else _rows(layout))


def _same_dialogue(hub, text):
    assert hub.persona_a == text.persona_a == []
    assert hub.persona_b == text.persona_b and hub.turns == text.turns and hub.first_speaker == text.first_speaker
    # the hub puts the gold reply last; ConvAI2 text has it anywhere among the candidates
    assert [c and sorted(c) for c in hub.candidates] == [c and sorted(c) for c in text.candidates]
    assert all(c is None or c[-1] == hub.turns[j] for j, c in enumerate(hub.candidates))


@pytest.mark.parametrize("layout", list(LAYOUT_FILES))
def test_in_memory_layouts_are_recognised_and_read_like_the_convai2_text(layout):
    text = read_dialogues(HUB / "valid_self_original.txt").dialogues
    result = read_dialogues(_dataset(layout))
    assert result.format == layout
    assert result.stats.rows_read == (9 if layout == "personachat_turns" else 3)
    assert result.stats.dialogues_kept == len(result.dialogues) == len(text) == 3
    for hub, txt in zip(result.dialogues, text):
        _same_dialogue(hub, txt)
    assert result.dialogues[1].first_speaker == "B"  # its history opens with "__ SILENCE __"


def test_turn_rows_are_grouped_by_conv_id_in_any_order():
    rows = _rows("personachat_turns")
    result = read_dialogues(_dataset("personachat_turns", rows[::-1]))
    ordered = read_dialogues(_dataset("personachat_turns", rows))
    assert sorted(d.dialogue_id for d in result.dialogues) == sorted(d.dialogue_id for d in ordered.dialogues)
    by_id = {d.dialogue_id: d for d in ordered.dialogues}
    assert all(d.turns == by_id[d.dialogue_id].turns for d in result.dialogues)


def test_format_is_chosen_with_format_and_a_wrong_choice_names_the_missing_column():
    ds = _dataset("personachat_turns")
    assert read_dialogues(ds, format="personachat_turns").stats.dialogues_kept == 3
    with pytest.raises(DataFormatError, match="field 'utterances': missing column of the personachat_dialogues layout"):
        read_dialogues(ds, format="personachat_dialogues")


@pytest.mark.parametrize("layout", list(LAYOUT_FILES))
def test_a_reply_that_does_not_continue_its_dialogue_is_skipped_or_strict_error(layout):
    rows = _rows(layout)
    if layout == "personachat_turns":
        rows[2]["history"][0] = "something else was said"  # conv_id 0, utterance_idx 2
        where = "row 1 (conv_id 0): field 'history'"
    else:
        rows[0]["utterances"][2]["history"][0] = "something else was said"
        where = "row 1: field 'utterances'"
    result = read_dialogues(_dataset(layout, rows))
    assert result.stats.skipped == 1 and result.stats.dialogues_kept == 2
    (warning,) = result.stats.warnings
    assert where in warning and "reply 2: its history and gold reply do not continue the dialogue" in warning
    with pytest.raises(DataFormatError, match="reply 2: .* \\(--strict\\)"):
        read_dialogues(_dataset(layout, rows), strict=True)


def test_missing_reply_number_is_skipped_with_a_warning_naming_the_row():
    rows = [r for r in _rows("personachat_turns") if not (r["conv_id"] == 2 and r["utterance_idx"] == 1)]
    result = read_dialogues(_dataset("personachat_turns", rows))
    assert result.stats.skipped == 1 and result.stats.dialogues_kept == 2
    (warning,) = result.stats.warnings
    assert "row 7 (conv_id 2): field 'utterance_idx'" in warning and "[0, 2]" in warning


def test_hub_id_is_loaded_at_the_pinned_revision(monkeypatch):
    calls = []

    def fake_load_dataset(name, config=None, split=None, revision=None):
        calls.append((name, config, split, revision))
        return _dataset("personachat_dialogues")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = read_dialogues("AlekseyKorshuk/persona-chat@498fd00", split="validation")
    assert calls == [("AlekseyKorshuk/persona-chat", None, "validation", "498fd00")]
    assert result.format == "personachat_dialogues" and result.stats.dialogues_kept == 3
    read_dialogues("bavard/personachat_truecased", split="validation", revision="be2fcc0", config_name="full")
    assert calls[-1] == ("bavard/personachat_truecased", "full", "validation", "be2fcc0")


def test_a_hub_id_that_cannot_be_loaded_is_one_line_naming_it(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError) as err:
        read_dialogues("nobody/nothing@v1")
    assert str(err.value) == ("nobody/nothing: cannot load this dataset (split 'train', revision 'v1'): "
                              "Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFoundError)")


def test_saved_dataset_dict_without_the_split_is_named(tmp_path):
    datasets.DatasetDict({"validation": _dataset("personachat_dialogues")}).save_to_disk(str(tmp_path / "pc"))
    assert read_dialogues(tmp_path / "pc", split="validation").stats.dialogues_kept == 3
    with pytest.raises(DataFormatError, match="field 'split': no split 'train'; the folder has \\['validation'\\]"):
        read_dialogues(tmp_path / "pc")


@pytest.mark.parametrize("text, message", [
    ('{"turns": dialog}', "not valid JSON"), ('["turns"]', "expected a JSON object"), ('{"turns": 3}', "expected a JSON object"),
])
def test_bad_column_mapping_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=f"--column_mapping: {message}"):
        parse_column_mapping(text)
    assert parse_column_mapping('{"turns": "dialog"}') == {"turns": "dialog"}
