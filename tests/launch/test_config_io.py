import logging
from dataclasses import dataclass, field

import pytest
import transformers

from launch.config_io import CommandParser, configure_logging


@pytest.fixture()
def restore_logging():
    root, tf = logging.getLogger().level, transformers.utils.logging.get_verbosity()
    yield
    logging.getLogger().setLevel(root)
    transformers.utils.logging.set_verbosity(tf)


def test_log_level_sets_python_and_transformers_logging(restore_logging):
    configure_logging("debug")
    assert logging.getLogger().level == logging.DEBUG and logging.getLogger("rl.trainer").isEnabledFor(logging.DEBUG)
    assert transformers.utils.logging.get_verbosity() == logging.DEBUG
    configure_logging("error")
    assert not logging.getLogger("rl.trainer").isEnabledFor(logging.WARNING)
    configure_logging("passive")  # HF TrainingArguments' default: left to the Trainer
    assert logging.getLogger().level == logging.ERROR
    with pytest.raises(ValueError, match="log_level='loud': expected one of debug, info, warning, error, critical"):
        configure_logging("loud")


@pytest.mark.parametrize("command", ["rl", "receiver", "eval"])
def test_cli_log_level(command, capsys, restore_logging):
    from launch.cli import main

    assert main([command, "--log_level", "loud"]) == 2
    assert "log_level='loud'" in capsys.readouterr().err


@dataclass
class _Options:
    dtype: str | None = field(default=None, metadata={"help": "float32 or bfloat16 (default: the checkpoint's)"})
    checkpointing: bool = field(default=False, metadata={"help": "less memory, ~30% more compute"})
    sample: bool = field(default=True, metadata={"help": "sample (--no_sample: greedy)"})
    steps: int = field(default=3, metadata={"help": "steps"})


def test_help_states_each_default_once_and_reads_bool_switches_right():
    text = " ".join(CommandParser((_Options,), prog="p2bot test").format_help().split())
    assert "(default: the checkpoint's) --" in text  # argparse's "(default: None)" not added after it
    assert "less memory, ~30% more compute (default: False)" in text  # a plain '%' is not a format
    assert "sample (--no_sample: greedy) (default: True) --no_sample, --no-sample turn --sample off --steps" in text
    assert "steps (default: 3)" in text
