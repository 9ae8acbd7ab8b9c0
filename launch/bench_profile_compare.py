"""``p2bot bench profile-compare``: several ``p2bot bench profile`` results side by side, the first as the baseline.

Reads each run's ``bench_profile.json`` and writes ``bench_profile_compare.json`` to ``--output_dir``: per phase the
seconds per iteration of every run, then dialogues per second, the speed-up over the first run, the peak RSS, and
what each run's config changed from the first one's. Profile the runs one after the other on the same machine.

    p2bot bench profile-compare --runs runs/profile_main/bench_profile.json runs/profile_new/bench_profile.json \\
        --labels main new --output_dir runs/profile_compare
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.files.atomic import write_text_atomic
from data_prep.files.json_file import read_json_object

PHASES = ("rollout", "reward/persona", "reward/fluency", "score", "experience/policy_forward",
          "experience/reference_forward", "experience", "update/forward", "update/backward", "update/optimizer",
          "update", "iteration")
IGNORED_KEYS = ("output_dir", "profile_steps", "profile_checkpoint")  # not part of what was measured


@dataclass
class ProfileCompareConfig:
    runs: list[str] = field(default_factory=list, metadata={"help": "bench_profile.json files; the first is the baseline"})
    labels: list[str] = field(default_factory=list, metadata={"help": "a column label per run (default: run 1, 2, ...)"})
    output_dir: str = field(default="runs/profile_compare", metadata={"help": "where bench_profile_compare.json goes"})

    def __post_init__(self):
        if len(self.runs) < 2:
            raise ValueError(f"--runs: {len(self.runs)} file(s); give at least two bench_profile.json files")
        if self.labels and len(self.labels) != len(self.runs):
            raise ValueError(f"--labels: {len(self.labels)} label(s) for {len(self.runs)} runs")


CONFIG_TYPES = (ProfileCompareConfig,)  # what run parses; the docs build its parser from this


def load_profile(path: str) -> dict:
    return read_json_object(path, ("steps", "phases", "iteration_s", "dialogues_per_step", "provenance"),
                            "a bench_profile.json written by p2bot bench profile")


def config_diff(config: dict, base: dict) -> str:
    """The keys whose value differs from the baseline's; an option the baseline's code did not have counts only when
    it is on (not False or None)."""
    keys = sorted(k for k in set(config) | set(base) if k not in IGNORED_KEYS and config.get(k) != base.get(k)
                  and (k in base or config.get(k) not in (False, None)))
    return ", ".join(f"{k}: {json.dumps(config.get(k))}" for k in keys) or "(baseline)"


def compare(profiles: list[dict], labels: list[str]) -> dict:
    base = profiles[0]
    runs = []
    for profile, label in zip(profiles, labels):
        prov = profile["provenance"]
        per_phase = {ph: profile["phases"][ph]["seconds"] / profile["steps"] for ph in PHASES if ph in profile["phases"]}
        runs.append(dict(label=label, per_iteration_s=per_phase, iteration_s=profile["iteration_s"],
                         dialogues_per_s=profile["dialogues_per_step"] / profile["iteration_s"],
                         speedup=base["iteration_s"] / profile["iteration_s"],
                         peak_rss_mb=profile["phases"]["iteration"]["peak_rss_mb"], steps=profile["steps"],
                         command=prov["command"], commit=prov["commit"], machine=prov.get("machine", ""),
                         config_diff=config_diff(prov.get("config") or {}, base["provenance"].get("config") or {})))
    return {"runs": runs, "table": table(runs)}


def table(runs: list[dict]) -> str:
    from launch.docs.results import markdown

    rows = [[ph] + [f"{r['per_iteration_s'][ph]:.1f}" if ph in r["per_iteration_s"] else "-" for r in runs]
            for ph in PHASES if any(ph in r["per_iteration_s"] for r in runs)]
    rows += [["dialogues per second"] + [f"{r['dialogues_per_s']:.4f}" for r in runs],
             [f"speed-up over {runs[0]['label']}"] + [f"{r['speedup']:.2f}x" for r in runs],
             ["peak RSS"] + [f"{r['peak_rss_mb']:,.0f} MB" for r in runs],
             ["commit"] + [f"`{r['commit'][:12]}`" for r in runs],
             ["config change"] + [f"`{r['config_diff']}`" if r["config_diff"] != "(baseline)" else "(baseline)"
                                  for r in runs]]
    return markdown(["seconds per iteration"] + [r["label"] for r in runs], rows)


def run(argv: list[str] | None = None) -> int:
    from launch.config_io import parse_configs
    from launch.provenance import run_provenance

    (cfg,) = parse_configs(CONFIG_TYPES, argv, prog="p2bot bench profile-compare", description=__doc__)
    labels = cfg.labels or [f"run {i + 1}" for i in range(len(cfg.runs))]
    result = compare([load_profile(p) for p in cfg.runs], labels)
    result["provenance"] = run_provenance("p2bot bench profile-compare", argv, cfg)
    first = result["runs"][0]["machine"]
    result["provenance"]["machine"] = first or result["provenance"]["machine"]  # where the profiles ran
    print(result["table"])
    path = write_text_atomic(Path(cfg.output_dir) / "bench_profile_compare.json", json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0
