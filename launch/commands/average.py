"""``p2bot average``: one policy from several, by averaging their weights (e.g. the RL runs of several seeds).

The models must share an architecture and should share a start (the SFT model every RL run began from): averaging
unrelated fine-tunes gives noise. LoRA policies are merged into their base first, so the output is a full model.
Writes the averaged Transmitter (safetensors, atomic) to ``output_dir/model`` and the resolved config to
``output_dir``; judge it like any policy, e.g. ``p2bot eval --selfplay --model <output_dir>/model --compare <sft>``. See ``rl.evaluation.averaging``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from launch.config_io import start_command
from launch.errors import option
from models.networks.transmitter import Transmitter
from rl.evaluation.averaging import average_transmitters


@dataclass
class AverageConfig:
    models: str = field(default="", metadata={"help": "comma-separated policies to average (local paths or hub ids)"})
    weights: str = field(default="", metadata={"help": "comma-separated weights, one per model ('' = uniform)"})
    output_dir: str = field(default="runs/average", metadata={"help": "the averaged policy goes to <output_dir>/model"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})

    def __post_init__(self):
        self.model_list = [m.strip() for m in self.models.split(",") if m.strip()]
        if len(self.model_list) < 2:
            raise ValueError(f"--models {self.models!r}: give at least two comma-separated policies")
        try:
            self.weight_list = [float(w) for w in self.weights.split(",")] if self.weights.strip() else None
        except ValueError:
            raise ValueError(f"--weights {self.weights!r}: expected comma-separated numbers") from None
        if self.weight_list is not None and len(self.weight_list) != len(self.model_list):
            raise ValueError(f"--weights: {len(self.weight_list)} weights for {len(self.model_list)} models")
        if (Path(self.output_dir) / "model").resolve() in {Path(m).resolve() for m in self.model_list}:
            raise ValueError(f"--output_dir {self.output_dir} is one of the models: write the average elsewhere")


CONFIG_TYPES = (AverageConfig,)  # what main parses; the docs build its parser from this


def main(argv: list[str] | None = None) -> int:
    cfg, out = start_command(*CONFIG_TYPES, argv, prog="p2bot average", description=__doc__)
    start = time.perf_counter()

    def load(path: str) -> Transmitter:
        with option("--models", path):
            model = Transmitter.from_pretrained(path, device="cpu")
        print(f"p2bot average: read {path}", file=sys.stderr)
        return model

    model = average_transmitters(cfg.model_list, cfg.weight_list, loader=load)
    weights = cfg.weight_list or [1.0] * len(cfg.model_list)
    model.card.update(stage="average", config=dict(models=cfg.model_list, weights=weights))
    saved = model.save_pretrained(out / "model")
    print(f"p2bot average: {len(cfg.model_list)} policies (weights {weights}) averaged in "
          f"{time.perf_counter() - start:.1f} s; saved to {saved}")
    return 0
