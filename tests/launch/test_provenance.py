"""A run's provenance names the command, config, commit, machine, date and wall time that produced a result."""

import dataclasses
import subprocess
import time

from launch.provenance import SOURCE_ROOT, describe_machine, git_commit, run_provenance


@dataclasses.dataclass
class _Cfg:
    steps: int = 3
    name: str = "x"


def test_provenance_names_command_config_commit_machine_and_time():
    started = time.time() - 2.0
    record = run_provenance("p2bot bench eval", ["--num_examples", "2", "--output_dir", "a b"], _Cfg(), started)
    assert record["command"] == "p2bot bench eval --num_examples 2 --output_dir 'a b'"
    assert record["config"] == {"steps": 3, "name": "x"}
    head = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert record["commit"].split("-")[0] == head.strip()
    assert 2.0 <= record["wall_time_s"] < 120
    assert record["machine"] == describe_machine(record["machine_details"])
    assert record["machine_details"]["logical_cpus"] >= 1 and record["machine_details"]["ram_gib"] > 0
    assert record["date"][:4].isdigit() and record["date"].endswith("+00:00")
    assert record["origin"] == "run"


def test_commit_outside_a_checkout_is_the_package_version(tmp_path):
    assert git_commit(tmp_path).startswith(("p2bot ", "unknown"))
