"""One name per idea on every command: ``--data`` is the dialogue file and ``--model`` the model; old names still work,
on the command line and as ``--config`` keys, with a one-line deprecation; options are never abbreviated."""

import pytest
import yaml

from launch.cli import main
from launch.config_io import RENAMED, canonical_keys, parse_configs
from rl.config import PPOConfig

PARSED = ("rl", "sft", "eval", "receiver", "chat", "select", "average", "demo")  # the commands built on parse_configs


def _last_error(capsys) -> tuple[str, str]:
    err = capsys.readouterr().err
    return err, err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, deprecation, error", [
    (["rl", "--data_path", "/missing.csv"], "p2bot rl: --data_path is deprecated, use --data",
     "p2bot rl: error: --data: /missing.csv: no such file"),
    (["rl", "--data-path", "/missing.csv"], "p2bot rl: --data-path is deprecated, use --data",
     "p2bot rl: error: --data: /missing.csv: no such file"),
    (["receiver", "--train_data", "/missing.txt"], "p2bot receiver: --train_data is deprecated, use --data",
     "p2bot receiver: error: --data: /missing.txt: no such file"),
    (["chat", "--model_name_or_path", "/missing"], "p2bot chat: --model_name_or_path is deprecated, use --model",
     "p2bot chat: error: --model: /missing: no such model directory"),
])
def test_old_option_names_still_work_with_a_deprecation_line(argv, deprecation, error, tmp_path, capsys):
    assert main([*argv, "--output_dir", str(tmp_path)] if argv[0] != "chat" else argv) == 1
    err, last = _last_error(capsys)
    assert deprecation in err.splitlines() and last == error  # the value reached the new option


@pytest.mark.parametrize("command, key, value, error", [
    ("rl", "data_path", "/missing.csv", "p2bot rl: error: --data: /missing.csv: no such file"),
    ("receiver", "train_data", "/missing.txt", "p2bot receiver: error: --data: /missing.txt: no such file"),
])
def test_old_names_as_config_keys(command, key, value, error, tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({key: value, "output_dir": str(tmp_path / "out")}))
    assert main([command, "--config", str(path)]) == 1
    err, last = _last_error(capsys)
    assert f"p2bot {command}: config key {key} is deprecated, use data" in err.splitlines() and last == error


def test_config_with_both_names_of_one_option_is_refused(tmp_path, capsys):
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({"data_path": "a.csv", "data": "b.csv"}))
    assert main(["rl", "--config", str(path)]) == 2
    assert "config keys data_path and data are the same option: keep data" in capsys.readouterr().err


def test_new_names_print_no_deprecation(capsys):
    (cfg,) = parse_configs((PPOConfig,), ["--data", "d.csv", "--model", "m"], prog="p2bot rl")
    assert (cfg.data, cfg.model_name_or_path) == ("d.csv", "m")  # rl takes --model as every command does
    assert "deprecated" not in capsys.readouterr().err


def test_canonical_keys_maps_old_and_other_names():
    assert canonical_keys("p2bot rl", {"data_path": "d", "model": "m", "seed": 1}) == {
        "data": "d", "model_name_or_path": "m", "seed": 1}
    assert canonical_keys("p2bot eval", {"data_path": "d"}) == {"data_path": "d"}  # eval never had it


def test_every_renamed_option_names_a_field_of_its_command():
    from launch.commands.chat import ChatConfig
    from launch.commands.receiver import ReceiverDataConfig

    fields = {"p2bot rl": PPOConfig, "p2bot receiver": ReceiverDataConfig, "p2bot chat": ChatConfig}
    for prog, names in RENAMED.items():
        for old, new in names.items():
            assert new in fields[prog].__dataclass_fields__ and old not in fields[prog].__dataclass_fields__


@pytest.mark.parametrize("command", ["sft", "eval", "chat", "rl", "receiver"])
def test_model_is_one_unambiguous_option(command, tmp_path, capsys):
    """``--model`` reaches the model option of every command that loads one (never an abbreviation error)."""
    argv = [command, "--model", "/no/such/model"]
    assert main(argv if command == "chat" else [*argv, "--output_dir", str(tmp_path)]) == 1
    err, last = _last_error(capsys)
    assert "ambiguous" not in err and last.endswith("/no/such/model: no such model directory")


@pytest.mark.parametrize("argv", [["average", "--model", "a,b"], ["eval", "--mod", "x"], ["rl", "--data_p", "x"]])
def test_options_are_not_abbreviated(argv, capsys):
    assert main(argv) == 2  # not silently --models, --model or --data_path
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("command", PARSED)
def test_help_states_each_default_once(command, capsys):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--model" in text or command in ("average", "demo")
    for entry in text.split(" --")[1:]:
        assert entry.count("(default") <= 1, entry
        if entry.startswith("no_") or entry.startswith("no-"):
            assert "(default: False)" not in entry, entry  # a --no_X switch reads as what it does
    for old in RENAMED.get(f"p2bot {command}", {}):
        assert f"--{old} " not in text  # old names work but are not advertised


def test_bool_help_shows_the_default_that_holds(capsys):
    assert main(["chat", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "sample (--no_do_sample: greedy) (default: True)" in text
    assert "turn --do_sample off" in text
    assert "(default: the checkpoint's) (default: None)" not in text and "(default: the checkpoint's)" in text
