"""Any ``datasets`` dataset (a hub id, a ``save_to_disk`` folder, or an in-memory one) via a column mapping."""

from __future__ import annotations

import json
import os

from data_prep.result import ReadResult, RepairLog
from data_prep.schema import DataFormatError, PersonaDialogue
from data_prep.spc import parse_labelled_conversation, split_persona

DEFAULT_MAPPING = {"persona_a": "persona_a", "persona_b": "persona_b", "turns": "turns"}


def _as_list(value, path: str, loc: str, column: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return split_persona(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise DataFormatError(path, loc, column, f"expected a list of strings or a newline-separated string, got {type(value).__name__}")


def split_revision(name: str) -> tuple[str, str | None]:
    """``"owner/name@rev"`` → ``("owner/name", "rev")``; a name without ``@`` (or an existing path) has none."""
    if "@" in name and not os.path.exists(name):
        base, _, rev = name.rpartition("@")
        return base, rev or None
    return name, None


def load_hf(name_or_path: str, split: str = "train", config_name: str | None = None, revision: str | None = None):
    """A split of a ``save_to_disk`` folder or of a hub dataset (``revision``, or ``id@revision``, pins the commit)."""
    import datasets

    if os.path.isdir(name_or_path) and any(
            os.path.exists(os.path.join(name_or_path, f)) for f in ("dataset_info.json", "dataset_dict.json")):
        ds = datasets.load_from_disk(name_or_path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataFormatError(name_or_path, "dataset_dict.json", "split",
                                      f"no split {split!r}; the folder has {sorted(ds)}")
            return ds[split]
        return ds
    name, pinned = split_revision(name_or_path)
    try:
        return datasets.load_dataset(name, config_name, split=split, revision=revision or pinned)
    except Exception as err:  # datasets raises many kinds (not found, offline, missing config or split)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = ", ".join(f"{k} {v!r}" for k, v in (("config", config_name), ("split", split),
                                                      ("revision", revision or pinned)) if v)
        raise FileNotFoundError(f"{name}: cannot load this dataset ({where}): {first}") from err


def parse_column_mapping(text: str | None) -> dict[str, str] | None:
    """``--column_mapping`` JSON → ``{our_field: column}``; a clear ``ValueError`` when it is not that."""
    if not text:
        return None
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--column_mapping: not valid JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f'--column_mapping: expected a JSON object of field names to column names, e.g. '
                         f'\'{{"turns": "dialog"}}\', got {text!r}')
    return mapping


def read_hf(dataset, column_mapping: dict[str, str] | None = None, strict: bool = False, name: str = "",
            split: str = "train") -> ReadResult:
    """Read dialogues from a ``datasets.Dataset`` (or a hub id / folder) given ``{our_field: column}``.

    ``turns`` may hold a list of utterances (alternating, A first) or one string of ``User 1: ...`` lines.
    """
    if isinstance(dataset, str):
        name = name or dataset
        dataset = load_hf(dataset, split=split)
    name = name or "<dataset>"
    mapping = {**DEFAULT_MAPPING, **(column_mapping or {})}
    for key in mapping:
        if key not in DEFAULT_MAPPING and key not in ("first_speaker", "dialogue_id"):
            raise DataFormatError(name, "column mapping", key, f"unknown field; map {sorted(DEFAULT_MAPPING)}")
    for key, column in mapping.items():
        if column not in dataset.column_names:
            raise DataFormatError(name, "row 0 (columns)", column, f"missing column (mapped to {key}); columns: {dataset.column_names}")
    log = RepairLog(name, strict)
    dialogues = []
    for i, row in enumerate(dataset, start=1):
        log.stats.rows_read += 1
        loc = f"row {i}"
        persona_a = _as_list(row[mapping["persona_a"]], name, loc, mapping["persona_a"]) or []
        persona_b = _as_list(row[mapping["persona_b"]], name, loc, mapping["persona_b"]) or []
        raw_turns = row[mapping["turns"]]
        first = row[mapping["first_speaker"]] if "first_speaker" in mapping else "A"
        if isinstance(raw_turns, str):
            parsed = parse_labelled_conversation(raw_turns, log, loc, mapping["turns"])
            if parsed is None:
                continue
            turns, first = parsed
        else:
            turns = _as_list(raw_turns, name, loc, mapping["turns"]) or []
        did = str(row[mapping["dialogue_id"]]) if "dialogue_id" in mapping else f"{os.path.basename(name)}:{i}"
        d = PersonaDialogue(persona_a=persona_a, persona_b=persona_b, turns=turns, first_speaker=first, dialogue_id=did)
        d.validate(name, loc)
        dialogues.append(d)
    return log.result(dialogues, "hf")
