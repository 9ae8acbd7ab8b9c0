"""The self-play transcript record (``selfplay_dialogues.jsonl``): written by ``dump_records``, read by
``read_records``, and reused for a compare model by ``load_compare_transcripts``.

Comparing several RL checkpoints or seeds with the same SFT model replays the SFT model on the same pairs with the
same seeds every time: the same dialogues, generated again. ``--compare_transcripts DIR`` reads them from DIR (an
earlier run's ``output_dir``) instead and judges them again with this run's judges. What makes the reuse valid is
checked, and each failure names the file and the field: the earlier run evaluated the ``--compare`` model (same path,
same weight files by size and modification time when that run recorded them), with the same pairs and the same
generation settings (``TRANSCRIPT_FIELDS`` of its ``resolved_config.yaml``), and its transcripts cover exactly this
run's pairs, ``dialogues_per_pair`` dialogues each, with the same personas. A different device, backend or
``batch_pairs`` gives other random streams: the dialogues are still samples of the same model under the same
settings, so that is a warning (the comparison is then paired over persona pairs only, not over random streams).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from rl.evaluation.play import PlayedDialogue
from rl.selfplay import Dialogue

RESULTS_FILE, TABLE_FILE, SAMPLES_FILE = "selfplay_results.json", "selfplay_table.md", "selfplay_samples.md"
DIALOGUES_FILE = "selfplay_dialogues.jsonl"

# the settings that decide which dialogues are played and how they are generated
TRANSCRIPT_FIELDS = ("data", "data_format", "skip_dialogues", "max_dialogues", "skip_pairs", "pairs",
                     "dialogues_per_pair", "exchanges", "seed", "do_sample", "temperature", "top_k", "top_p",
                     "max_new_tokens", "max_history_tokens", "partner", "torch_dtype")
PATH_FIELDS = ("data", "partner")  # equal when they name the same file or folder
# settings that change only the random streams
STREAM_FIELDS = ("batch_pairs", "generation_backend")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def weights_fingerprint(name: str) -> list[list] | None:
    """``[file name, size, mtime_ns]`` of a local model directory's weight files; None for a hub id or 'embedded'."""
    path = Path(name)
    if not path.is_dir():
        return None
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir())
            if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]


def transcripts_folder(source: str) -> Path:
    """The evaluation folder ``--compare_transcripts`` names (the folder itself, or its dialogues file)."""
    path = Path(source)
    return path.parent if path.suffix == ".jsonl" else path


def _same_name_or_path(a: str, b: str) -> bool:
    """The same name, or two paths to the same file or folder."""
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def _warn(message: str) -> None:
    print(f"p2bot eval: warning: {message}", file=sys.stderr)


def to_record(model: str, pd: PlayedDialogue) -> dict:
    """One line of the record: the model's label, the dialogue, which turns were cut off, which speakers were judged."""
    d = pd.dialogue
    return {"model": model, "dialogue_id": d.dialogue_id, "pair_id": d.pair_id, "persona_a": d.persona_a,
            "persona_b": d.persona_b, "speakers": d.speakers, "turns": d.turns, "cut_off": pd.cut_off,
            "judged": list(pd.judged)}


def dump_records(evals) -> str:
    """The record of every dialogue of every ``ModelEval`` in ``evals``, as JSONL text."""
    return "".join(json.dumps(to_record(ev.name, pd)) + "\n" for ev in evals for pd in ev.dialogues)


def read_records(path: Path) -> Iterator[tuple[str, PlayedDialogue]]:
    """``(model label, PlayedDialogue)`` for each line of a record file; a malformed line raises ``ValueError``
    naming the file, the line and the field."""
    with Path(path).open() as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                d = Dialogue(rec["dialogue_id"], rec["pair_id"], list(rec["persona_a"]), list(rec["persona_b"]),
                             list(rec["turns"]), list(rec["speakers"]))
                played = PlayedDialogue(d, [bool(c) for c in rec["cut_off"]], tuple(rec["judged"]))
                model = str(rec["model"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}, line {line_no}: not a self-play transcript record "
                                 f"({type(err).__name__}: {err})") from None
            if not len(d.turns) == len(d.speakers) == len(played.cut_off):
                raise ValueError(f"{path}, line {line_no}: fields turns, speakers and cut_off differ in length")
            yield model, played


def load_compare_transcripts(source: str, cfg, pairs: Sequence[dict], device: str) -> list[PlayedDialogue]:
    """The dialogues that the run in ``source`` generated for ``cfg.compare``, in that file's order.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming file, line and field) for a run
    that does not match ``cfg`` or ``pairs``.
    """
    folder = transcripts_folder(source)  # not this run's output_dir: EvalConfig refuses that before writing there
    files = {name: folder / name for name in ("resolved_config.yaml", RESULTS_FILE, DIALOGUES_FILE)}
    for f in files.values():
        if not f.is_file():
            raise FileNotFoundError(f"--compare_transcripts: {f} not found (expected the output_dir of an earlier "
                                    "p2bot eval --selfplay run)")
    earlier = yaml.safe_load(files["resolved_config.yaml"].read_text()) or {}
    if not earlier.get("selfplay"):
        raise ValueError(f"{files['resolved_config.yaml']}: not a --selfplay evaluation (selfplay: false)")
    for name in TRANSCRIPT_FIELDS:
        then, now = earlier.get(name), getattr(cfg, name)
        if name in PATH_FIELDS and then and now and _same_name_or_path(str(then), str(now)):
            continue
        if then != now:
            raise ValueError(f"{files['resolved_config.yaml']}: field {name} is {then!r}, this run has {now!r}; its "
                             "transcripts are not this evaluation's dialogues")
    results = json.loads(files[RESULTS_FILE].read_text())
    models, labels = results.get("models", []), results.get("labels", [])
    index = next((i for i, m in enumerate(models) if _same_name_or_path(str(m), str(cfg.compare))), None)
    if index is None:
        raise ValueError(f"{files[RESULTS_FILE]}: field models is {models}; it did not evaluate --compare "
                         f"{cfg.compare}")
    recorded = (results.get("fingerprints") or {}).get(str(models[index]))
    now = weights_fingerprint(str(cfg.compare))
    if recorded is None:
        _warn(f"{files[RESULTS_FILE]} records no weight fingerprint of {models[index]}; reusing its transcripts "
              "assumes that model has not changed since")
    elif recorded != now:
        raise ValueError(f"{files[RESULTS_FILE]}: field fingerprints: the weight files of {cfg.compare} changed since "
                         f"that run ({recorded} then, {now} now); evaluate it again")
    streams = [f"{name} {earlier.get(name)!r} vs {getattr(cfg, name)!r}" for name in STREAM_FIELDS
               if earlier.get(name) != getattr(cfg, name)]
    if results.get("device") != device:
        streams.append(f"device {results.get('device')!r} vs {device!r}")
    if streams:
        _warn(f"--compare_transcripts {source}: {', '.join(streams)}: other random streams than this run's, so the "
              "comparison is paired over persona pairs only")

    found = {pd.dialogue.dialogue_id: pd for model, pd in read_records(files[DIALOGUES_FILE]) if model == labels[index]}
    expected = set()
    for pair in pairs:
        for k in range(cfg.dialogues_per_pair):
            key = f"{pair['pair_id']}#{k}"
            if key not in found:
                raise ValueError(f"{files[DIALOGUES_FILE]}: no dialogue {key!r} of model {labels[index]!r}")
            d = found[key].dialogue
            if (d.pair_id, d.persona_a, d.persona_b) != (str(pair["pair_id"]), list(pair["persona_a"]),
                                                          list(pair["persona_b"])):
                raise ValueError(f"{files[DIALOGUES_FILE]}: dialogue {key!r}: fields pair_id/persona_a/persona_b "
                                 "differ from this run's pair (was the data file changed?)")
            expected.add(key)
    if set(found) != expected:
        extra = sorted(set(found) - expected)
        raise ValueError(f"{files[DIALOGUES_FILE]}: {len(extra)} dialogue(s) of model {labels[index]!r} are not this "
                         f"run's (first: {extra[0]!r})")
    return list(found.values())


def in_order_of(reused: list[PlayedDialogue], played: Sequence[PlayedDialogue]) -> list[PlayedDialogue]:
    """``reused`` in the order of ``played`` (the evaluated model's dialogues), which the paired comparison needs."""
    position = {pd.dialogue.dialogue_id: i for i, pd in enumerate(played)}
    if set(position) != {pd.dialogue.dialogue_id for pd in reused}:
        raise ValueError("--compare_transcripts: the reused dialogues are not the ones this run played")
    return sorted(reused, key=lambda pd: position[pd.dialogue.dialogue_id])
