"""The switches of tests/conftest.py: ``P2BOT_REQUIRE_EMBEDDED=1`` turns a missing embedded model package into a failure."""

import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = '''
from tests.conftest import require_embedded


def test_missing_package():
    require_embedded("p2bot-no-such-package")


def test_installed_package():
    require_embedded("pytest")
'''


def run_probe(tmp_path, **env) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "P2BOT_REQUIRE_EMBEDDED"} | {"PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "test_probe.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_embedded_package_skips_by_default(tmp_path):
    proc = run_probe(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert "p2bot-no-such-package is not installed (set P2BOT_REQUIRE_EMBEDDED=1" in proc.stdout


def test_require_embedded_turns_the_skip_into_a_failure(tmp_path):
    proc = run_probe(tmp_path, P2BOT_REQUIRE_EMBEDDED="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert "P2BOT_REQUIRE_EMBEDDED=1 but the embedded model package p2bot-no-such-package is not installed" in proc.stdout


def test_ci_sets_both_switches():
    ci = (REPO / ".ci" / "run").read_text()
    assert "export P2BOT_REQUIRE_SHARED_DATA=1" in ci and "export P2BOT_REQUIRE_EMBEDDED=1" in ci
