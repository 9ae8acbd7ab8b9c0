"""Reading a JSON object a p2bot command wrote (a record, a bench result), with errors that name the file, the line
of a syntax error and a missing field."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def read_json_object(path: str | os.PathLike, required: Sequence[str] = (), what: str = "a JSON file",
                     error: type[Exception] = ValueError) -> dict:
    """The JSON object in ``path``, with each of ``required`` present; otherwise ``error`` naming the file (``what``
    it should be), the line of a syntax error or the missing field."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: no such file ({what})")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise error(f"{p}: line {err.lineno}: not valid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise error(f"{p}: expected a JSON object ({what}), got {type(data).__name__}")
    for key in required:
        if key not in data:
            raise error(f"{p}: field '{key}' is missing (not {what})")
    return data
