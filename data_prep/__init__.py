"""Persona-dialogue data: one schema, readers for common formats, builders for each training stage."""

from data_prep.builders import build_receiver_examples, build_selfplay_pairs, build_transmitter_examples
from data_prep.io import FORMATS, infer_format, read_dataset, read_dialogues
from data_prep.jsonl import write_jsonl
from data_prep.result import ReadResult, ReadStats
from data_prep.sample import resolve_data_path, sample_data_path
from data_prep.schema import DataFormatError, PersonaDialogue

__all__ = [
    "FORMATS", "DataFormatError", "PersonaDialogue", "ReadResult", "ReadStats", "build_receiver_examples",
    "build_selfplay_pairs", "build_transmitter_examples", "infer_format", "read_dataset", "read_dialogues", "resolve_data_path", "sample_data_path",
    "write_jsonl",
]
