"""README.md and docs/ name only files, anchors, commands, options and choices that exist."""

from pathlib import Path

import pytest

from launch.docs.check import check_command, check_docs, slug

REPO = Path(__file__).resolve().parents[3]


def test_the_committed_docs_have_no_broken_link_path_or_command():
    problems = check_docs(REPO)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("line", [
    "p2bot rl --config launch/configs/experiments/p2_spc.yaml --max_steps 40",
    "p2bot rl --algo grpo --learning_rate=1e-5",
    "p2bot eval --selfplay --pairs 100 --compare runs/sft",
    "p2bot data validate|convert|stats PATH",
    "p2bot bench eval|receiver|selfplay|options",
    "p2bot docs record RESULT --name NAME --title TITLE",
    "p2bot recipe --config my.yaml --parallel --max_parallel 2",
    "accelerate launch --config_file launch/configs/accelerate/cpu_zero2.yaml -m launch.cli rl --config my.yaml",
    "bash launch/run.sh demo --output_dir runs/demo",
    "HF_HUB_OFFLINE=1 p2bot sft --model embedded --max_steps 10 --bf16 true",
])
def test_real_command_lines_pass(line):
    assert check_command(line.split(), inline="|" in line) == []


@pytest.mark.parametrize("line, expected", [
    ("p2bot train --config x.yaml", "no such command"),
    ("p2bot bench speed", "no such subcommand"),
    ("p2bot docs reference|publish", "no such subcommand"),
    ("p2bot rl --no_such_option 3", "no option --no_such_option"),
    ("p2bot rl --max_steps forty", "does not parse"),
    ("p2bot data check PATH", "is not one of"),
    ("p2bot data --format csv x.csv", "is not one of"),
    ("p2bot sft --bf16 maybe", "does not parse"),
    ("accelerate launch --num_procs 2 -m launch.cli rl", "accelerate launch: no option --num_procs"),
    ("accelerate launch -m launch.cli rl --kl 0.1", "no option --kl"),
    ("bash launch/run.sh train", "no such action"),
    ("bash launch/run.sh demo --no_such_option 1", "no option --no_such_option"),
])
def test_wrong_command_lines_are_reported(line, expected):
    errors = check_command(line.split(), inline="|" in line)
    assert any(expected in e for e in errors), errors


def _page(tmp_path: Path, text: str, other: str = "# Other\n\n## A section\n") -> list[str]:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(other)
    (tmp_path / "README.md").write_text(text)
    return [str(p) for p in check_docs(tmp_path)]


def test_broken_links_anchors_and_paths_are_reported_with_file_and_line(tmp_path):
    problems = _page(tmp_path, "# Title\n\nSee [other](docs/other.md#a-section) and [top](#title).\n"
                               "A [missing page](docs/nope.md).\n"
                               "A [missing anchor](docs/other.md#no-such-heading).\n"
                               "```bash\np2bot rl --config launch/configs/experiments/none.yaml\n```\n"
                               "Inline: `p2bot rl --bogus 1` and [ok](https://example.org/x.md).\n")
    assert problems == [
        "README.md:4: link to 'docs/nope.md': no such file docs/nope.md",
        "README.md:5: link to 'docs/other.md#no-such-heading': docs/other.md has no heading with anchor "
        "#no-such-heading",
        "README.md:7: launch/configs/experiments/none.yaml: no such file in the repository",
        "README.md:9: p2bot rl: no option --bogus",
    ]


def test_commands_in_text_blocks_and_code_comments_are_not_read(tmp_path):
    assert _page(tmp_path, "```text\np2bot rl   two copies talk\n```\n"
                           "```bash\n# p2bot rl --bogus is not a command here\np2bot rl \\\n  --max_steps 2  # a comment\n```\n"
                           "```yaml\nmodel: p2bot rl --bogus\n```\n") == []


def test_continuation_lines_are_one_command(tmp_path):
    problems = _page(tmp_path, "```bash\np2bot rl \\\n  --max_steps 2 \\\n  --bogus 1\n```\n")
    assert problems == ["README.md:2: p2bot rl: no option --bogus"]


@pytest.mark.parametrize("heading, anchor", [
    ("RL options on the P² task", "rl-options-on-the-p-task"),
    ("Did RL help? `p2bot eval --selfplay`", "did-rl-help-p2bot-eval---selfplay"),
    ("Logging, trackers and checkpoints", "logging-trackers-and-checkpoints"),
    ("The [recipe](recipe.md) YAML", "the-recipe-yaml"),
])
def test_github_anchor_slugs(heading, anchor):
    assert slug(heading) == anchor
