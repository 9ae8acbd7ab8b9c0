"""``p2bot docs reference|results|record|check``: the generated and checked parts of the documentation.

``reference``: write docs/reference/configuration.md from the config dataclasses (``--check``: exit 1 if stale).
``results``: re-render every result block of README.md and docs/ from docs/results/records/.
``record``: turn a run's result file into a committed record.
``check``: every relative link, anchor and ``p2bot`` command line of README.md and docs/ is real.
"""

from __future__ import annotations

# name -> "module:function"; each function takes argv (list[str]) and returns an exit code
SUBCOMMANDS: dict[str, str] = {
    "reference": "launch.docs.reference:reference_command",
    "results": "launch.docs.results:results_command",
    "record": "launch.docs.results:record_command",
    "check": "launch.docs.check:docs_check_command",
}


def main(argv: list[str] | None = None) -> int:
    from launch.cli import dispatch

    return dispatch("p2bot docs", SUBCOMMANDS, argv, __doc__)
