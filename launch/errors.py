"""One-line command-line errors, and the read/repaired/skipped line every command prints for its data.

A failure the user can fix (a missing file or model, malformed data, an option value that makes no sense) ends a
command with ``p2bot <command>: error: <option>: <what, naming the file and field>`` and exit status 1, not a
traceback. ``option("--data")`` around the code that uses an option adds its name; ``launch.cli`` prints whatever
user error reaches it as one line. ``P2BOT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys

from data_prep import ReadResult, infer_format, read_dialogues, resolve_data_path
from data_prep.io import DATASET_FORMATS
from models.loading.pretrained import resolve_model_path

# errors a user can fix; DataFormatError and json's decoding error are ValueErrors, missing files OSErrors
USER_ERRORS = (ValueError, OSError)


class CliError(Exception):
    """An error already worded for the command line (it names the option it comes from)."""


def one_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (transformers and datasets write paragraphs)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def option(name: str, value: object = None):
    """Name the command-line option ``name`` (and its ``value``, unless the message has it) in any user error raised
    inside the block."""
    try:
        yield
    except CliError:
        raise
    except USER_ERRORS as err:
        message = one_line(err)
        if value not in (None, "") and str(value) not in message:
            message = f"{value}: {message}"
        raise CliError(f"{name}: {message}") from err


def debug() -> bool:
    return os.environ.get("P2BOT_DEBUG", "") not in ("", "0")


def report(command: str, err: BaseException) -> int:
    """Print ``err`` as the one-line error of ``command``; the exit status (1)."""
    print(f"p2bot {command}: error: {one_line(err)}", file=sys.stderr)
    return 1


def require_inputs(data: dict[str, str | None] | None = None, models: dict[str, str | None] | None = None,
                   receivers: dict[str, str | None] | None = None) -> None:
    """Fail early, before any model is loaded, on a local data file or model directory that does not exist.

    Args:
        data: ``{option: path}`` of dialogue files ('' / None: the shipped sample; hub ids are not checked here).
        models / receivers: ``{option: name_or_path}`` of policies / Receiver encoders (None: unused).
    """
    for flag, path in (data or {}).items():
        with option(flag):
            local = resolve_data_path(path)
            if infer_format(local) not in DATASET_FORMATS and not local.is_file():
                raise FileNotFoundError(f"{local}: no such file")
    for kind, group in (("policy", models), ("receiver", receivers)):
        for flag, name in (group or {}).items():
            if name and name != "embedded":
                with option(flag, name):
                    resolve_model_path(name, kind=kind)


def read_summary(result: ReadResult) -> str:
    st = result.stats
    return (f"{result.path} ({result.format}): {st.rows_read} records read, {st.dialogues_kept} dialogues kept, "
            f"{st.repaired} repaired, {st.skipped} skipped")


def read_data(path: str | None, data_format: str | None = None, stream=None) -> ReadResult:
    """Read dialogues (``''``/None: the shipped sample) and print the read/repaired/skipped line to ``stream``
    (default: stderr)."""
    result = read_dialogues(resolve_data_path(path), format=data_format)
    print(read_summary(result), file=stream or sys.stderr, flush=True)
    return result
