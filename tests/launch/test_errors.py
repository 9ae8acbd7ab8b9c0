"""Every CLI error is one line naming the option and the file; every command that reads data says what it read."""

import csv

import pytest

from launch.cli import main
from launch.errors import CliError

MESSY_SPC = [  # one row repaired (labels normalised, scene note joined, split turn merged), one skipped, one clean
    ["I bake.", "I run.", "*User 1:* Hi!\n[A few minutes later]\nUser 2: Hello!\nUser 2: How are you?\nUser 1: Fine."],
    ["I bake.", "I run.", "The next day\nUser 1: Hi\nUser 2: Yo"],
    ["I knit.", "I swim.", "User 1: Hey there.\nUser 2: Hi, I just got back from the pool.\nUser 1: Nice!"],
]
READ_LINE = "messy.csv (spc): 3 records read, 2 dialogues kept, 1 repaired, 1 skipped"


def _messy_csv(tmp_path):
    path = tmp_path / "messy.csv"
    with open(path, "w", newline="") as f:
        f.write("user 1 personas,user 2 personas,Best Generated Conversation\n")
        csv.writer(f).writerows(MESSY_SPC)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    return err[-1]


@pytest.mark.parametrize("argv, line", [
    (["rl", "--data", "/missing.csv"], "p2bot rl: error: --data: /missing.csv: no such file"),
    (["rl", "--receiver_name_or_path", "/no/receiver"],
     "p2bot rl: error: --receiver_name_or_path: /no/receiver: no such model directory"),
    (["eval", "--model", "/missing"], "p2bot eval: error: --model: /missing: no such model directory"),
    (["eval", "--model", "/missing", "--selfplay", "true"], "p2bot eval: error: --model: /missing: no such model directory"),
    (["sft", "--data", "/missing/train.jsonl"], "p2bot sft: error: --data: /missing/train.jsonl: no such file"),
    (["receiver", "--data", "/missing.txt"], "p2bot receiver: error: --data: /missing.txt: no such file"),
    (["receiver", "--model_name_or_path", "./no-encoder"],
     "p2bot receiver: error: --model_name_or_path: ./no-encoder: no such model directory"),
    (["chat", "--model", "/missing"], "p2bot chat: error: --model: /missing: no such model directory"),
])
def test_missing_file_or_model_is_one_line_naming_the_option(argv, line, tmp_path, capsys):
    assert main([*argv, "--output_dir", str(tmp_path / "out")] if argv[0] != "chat" else argv) == 1
    assert _error_line(capsys) == line


def test_malformed_data_names_option_file_line_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"persona_a": ["I sing."], "persona_b": ["I fly."], "turns": ["hi", ""]}\n')
    assert main(["eval", "--data", str(bad), "--output_dir", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == f"p2bot eval: error: --data: {bad}:line 1: field 'turns': empty utterance at turn 1"


def test_model_that_cannot_be_loaded_names_it(tmp_path, capsys):
    """A hub id that is not there (offline in the tests): transformers' paragraph becomes one line with the id."""
    rc = main(["eval", "--model", "nobody/no-such-model", "--max_dialogues", "3", "--num_candidates", "2",
               "--output_dir", str(tmp_path / "out")])
    assert rc == 1
    line = _error_line(capsys)
    assert line.startswith("p2bot eval: error: --model: ") and "nobody/no-such-model" in line


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("P2BOT_DEBUG", "1")
    with pytest.raises(CliError, match="--data: /missing.csv: no such file"):
        main(["rl", "--data", "/missing.csv", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("command, data_flag", [("eval", "--data"), ("sft", "--data")])
def test_commands_print_records_read_repaired_and_skipped(command, data_flag, tmp_path, capsys):
    """The data is read (and accounted for) before the model, which here cannot be found."""
    argv = [command, data_flag, str(_messy_csv(tmp_path)), "--model", "nobody/no-such-model",
            "--output_dir", str(tmp_path / "out")]
    if command == "eval":
        argv += ["--num_candidates", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/{READ_LINE}" in err
    assert err.strip().splitlines()[-1].startswith(f"p2bot {command}: error: --model: ") and "nobody/no-such-model" in err


def test_rl_receiver_and_chat_readers_print_the_same_account(tmp_path, capsys):
    from launch.commands.chat import ChatConfig, fill_personas
    from launch.commands.receiver import ReceiverDataConfig, split_dialogues
    from launch.commands.sft import load_dialogues  # what p2bot rl and eval --selfplay read through

    path = _messy_csv(tmp_path)
    assert len(load_dialogues(str(path), None)) == 2
    assert f"{tmp_path}/{READ_LINE}" in capsys.readouterr().err
    train, held_out = split_dialogues(ReceiverDataConfig(data=str(path), eval_data=str(path)))
    assert len(train) == len(held_out) == 2
    assert capsys.readouterr().err.count(READ_LINE) == 2
    fill_personas(ChatConfig())
    assert "sample_dialogues.jsonl (jsonl): 44 records read, 44 dialogues kept, 0 repaired, 0 skipped" in capsys.readouterr().err
