"""``p2bot demo``: the pipeline on the embedded defaults and the sample data (stages land as they are built)."""

from __future__ import annotations

from data_prep import sample_data_path
from launch.commands import data


def main(argv: list[str] | None = None) -> int:
    return data.main(["stats", str(sample_data_path()), *(argv or [])])
