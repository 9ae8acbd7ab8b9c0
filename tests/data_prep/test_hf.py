import pytest
from datasets import Dataset

from data_prep import DataFormatError, read_dialogues
from data_prep.hf import read_hf


def test_in_memory_with_column_mapping():
    mapping = {"persona_a": "p1", "persona_b": "p2", "turns": "dialog"}
    ds = Dataset.from_dict({"p1": [["I sing."]], "p2": ["I dance.\nI swim."], "dialog": [["hi", "hey", "sing?"]]})
    (d,) = read_hf(ds, mapping).dialogues
    assert d.persona_b == ["I dance.", "I swim."] and d.turns == ["hi", "hey", "sing?"]


def test_saved_folder_is_read_by_path(tmp_path):
    ds = Dataset.from_dict({"persona_a": [["I fish."]], "persona_b": [["I read."]], "convo": ["User 1: hello\nUser 2: yo"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    result = read_dialogues(tmp_path / "ds", column_mapping={"turns": "convo"})
    assert result.format == "hf" and result.dialogues[0].turns == ["hello", "yo"]


def test_missing_column_is_named():
    ds = Dataset.from_dict({"persona_a": [["I fish."]], "persona_b": [["I read."]]})
    with pytest.raises(DataFormatError, match="field 'turns'"):
        read_hf(ds, name="mine")
