"""The configuration reference is generated from the config dataclasses, and the committed page is current."""

import dataclasses
from pathlib import Path

from launch.docs.parsers import commands
from launch.docs.reference import REFERENCE_PAGE, render, write_reference

REPO = Path(__file__).resolve().parents[3]


def test_the_committed_reference_page_is_current():
    assert (REPO / REFERENCE_PAGE).read_text() == render(), "run `p2bot docs reference` and commit the page"


def test_every_command_and_every_config_field_is_on_the_page():
    from rl.config import PPOConfig

    page = render()
    for command in commands():
        assert f"\n## {command.prog}\n" in page
    for f in dataclasses.fields(PPOConfig):
        if f.init and not f.name.startswith("_"):
            assert f"| `{f.name}` |" in page, f.name
    assert "| `kl_coef` | float |" in page


def test_a_new_field_makes_the_committed_page_stale(tmp_path, monkeypatch):
    (tmp_path / REFERENCE_PAGE).parent.mkdir(parents=True)
    (tmp_path / REFERENCE_PAGE).write_text(render())
    assert write_reference(tmp_path, check=True) is False
    from launch.commands import average

    @dataclasses.dataclass
    class Extended(average.CONFIG_TYPES[0]):
        brand_new_option: int = dataclasses.field(default=7, metadata={"help": "added after the page was written"})

    monkeypatch.setattr(average, "CONFIG_TYPES", (Extended,))
    assert write_reference(tmp_path, check=True) is True
    assert write_reference(tmp_path) is True
    assert "| `brand_new_option` | int | `7` | added after the page was written |" in (tmp_path / REFERENCE_PAGE).read_text()


def test_every_command_parser_builds_and_accepts_help_free_defaults():
    for command in commands():
        parser = command.parser()
        assert parser.prog.startswith("p2bot"), command.prog
