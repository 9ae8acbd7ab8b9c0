import logging

import pytest
import transformers

from launch.config_io import configure_logging


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
