import json
import subprocess
import sys
from pathlib import Path

from data_prep import read_dialogues
from launch.cli import main


def test_stats_on_shared_spc_match_an_independent_count(spc_valid_path, capsys):
    import csv
    import re

    assert main(["data", "stats", str(spc_valid_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    # Independent count: labelled lines straight from the CSV, runs of one speaker merged.
    dialogues = turns = persona_sentences = 0
    with open(spc_valid_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            labels = [m.group(1) for line in row["Best Generated Conversation"].splitlines()
                      if (m := re.match(r"^[\s*\[(]*User\s*([12])\s*[*\])]*\s*:", line, re.I))]
            first = row["Best Generated Conversation"].strip().splitlines()[0]
            if not re.match(r"^[\s*\[(]*User", first, re.I) and not re.match(r"^\s*[\[(*]", first):
                continue  # conversation opens with unlabelled text: the reader skips such rows
            dialogues += 1
            turns += 1 + sum(a != b for a, b in zip(labels, labels[1:]))
            persona_sentences += sum(len([s for s in row[c].splitlines() if s.strip()])
                                     for c in ("user 1 personas", "user 2 personas"))
    assert stats["dialogues"] == dialogues == 999
    assert stats["turns"] == turns
    assert stats["persona_sentences"] == persona_sentences
    assert stats["personas"] == 2 * dialogues


def test_validate_convert_and_errors(tmp_path, parlai_dir, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["data", "validate", str(parlai_dir / "valid_both_revised.txt")]) == 0
    assert "1 dialogues kept" in capsys.readouterr().out
    assert main(["data", "convert", str(parlai_dir / "valid_self_original.txt"), "-o", str(out)]) == 0
    assert len(read_dialogues(out).dialogues) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"persona_a": [], "persona_b": [], "turns": ["x"]}\n')
    assert main(["data", "validate", str(bad)]) == 1
    assert "bad.jsonl:line 1: field 'turns'" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "x.csv.gz")]) == 1
    assert "--format" in capsys.readouterr().err


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "launch.cli", "--help"], capture_output=True, text=True, check=True)
    assert "receiver" in proc.stdout and "data" in proc.stdout


def test_stats_on_saved_hub_layouts_count_the_dialogues_of_the_convai2_text(tmp_path, capsys):
    """A save_to_disk copy of each PersonaChat hub layout: the same dialogue and turn counts as the ConvAI2 text."""
    from datasets import Dataset, DatasetDict

    hub = Path(__file__).resolve().parents[1] / "fixtures" / "personachat_hub"
    assert main(["data", "stats", str(hub / "valid_self_original.txt"), "--json"]) == 0
    text = json.loads(capsys.readouterr().out)
    assert text["dialogues"] == 3 and text["turns"] == 8 + 3 + 6
    for name, rows_read in (("valid_turns.jsonl", 9), ("valid_dialogues.jsonl", 3)):
        rows = [json.loads(line) for line in (hub / name).read_text().splitlines()]
        DatasetDict({"validation": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / name))
        assert main(["data", "stats", str(tmp_path / name), "--split", "validation", "--json"]) == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["rows_read"] == rows_read
        for key in ("dialogues", "turns", "persona_sentences", "dialogues_with_candidates", "words"):
            assert stats[key] == text[key], (name, key)


def test_bad_column_mapping_is_one_line(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path), "--column_mapping", "{turns: x}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("p2bot data: error: --column_mapping: not valid JSON") and "\n" not in err
