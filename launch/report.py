"""Run reports: PNG plots of logged metrics over steps, a metrics table in Markdown, and the reward components of
several runs (e.g. a recipe's RL seeds) side by side."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

from data_prep.files.jsonl_log import read_jsonl

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# figure file -> (title, metric-name prefixes or exact names)
PANELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rewards.png": ("Reward components", ("reward/",)),
    "kl.png": ("KL to the reference", ("objective/kl", "policy/approx_kl", "objective/kl_coef")),
    "entropy.png": ("Policy entropy", ("policy/entropy",)),
    "losses.png": ("Losses", ("loss/",)),
}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Read a ``metrics.jsonl`` file (one JSON object per logged step, each with a ``step`` key); a last line torn by a
    killed run is dropped, and a step logged twice keeps its last row."""
    by_step: dict = {}
    for i, row in enumerate(read_jsonl(path)):
        by_step[row.get("step", f"row {i}")] = row
    return list(by_step.values())


def series(rows: Sequence[dict], name: str) -> tuple[list[float], list[float]]:
    """The (steps, values) of one metric, skipping rows where it is missing or not finite."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(row.get("step", i))
            ys.append(float(value))
    return xs, ys


def _matching(rows: Sequence[dict], patterns: Iterable[str]) -> list[str]:
    names = sorted({k for row in rows for k in row})
    return [n for n in names for p in patterns if (n.startswith(p) if p.endswith("/") else n == p)]


def plot_metrics(rows: Sequence[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Write one PNG per panel in :data:`PANELS` that has data; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, (title, patterns) in PANELS.items():
        names = [n for n in _matching(rows, patterns) if len(series(rows, n)[0]) > 0]
        if not names:
            continue
        _save_lines(out / filename, title, {name: series(rows, name) for name in names})
        written.append(out / filename)
    return written


def _save_lines(path: Path, title: str, lines: dict[str, tuple[list[float], list[float]]]) -> None:
    """One PNG at ``path``: a line per ``{label: (steps, values)}`` that has points, against the step."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (xs, ys) in lines.items():
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 40 else None, markersize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    """``{row_name: {column: value}}`` as a Markdown table (missing cells shown as ``-``)."""
    head = "| | " + " | ".join(columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    body = []
    for name, values in rows.items():
        cells = [f"{values[c]:.4g}" if isinstance(values.get(c), (int, float)) else "-" for c in columns]
        body.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def _window_mean(rows: Sequence[dict], name: str, lo: int, hi: int | None) -> float | None:
    """Mean of ``name`` over the logged rows ``lo:hi`` that have it."""
    values = series(rows, name)[1][lo:hi]
    return sum(values) / len(values) if values else None


def trend_means(runs: dict[str, Sequence[dict]], start: int = 0, window: int = 5,
                prefix: str = "reward/") -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """Per run and logged component ``<prefix><name>``: the mean over ``window`` logged iterations from ``start``
    (e.g. the first with the full number of exchanges) and over the last ``window``."""
    names = sorted({n for rows in runs.values() for n in _matching(rows, (prefix,)) if series(rows, n)[0]})
    return {label: {n[len(prefix):]: (_window_mean(rows, n, start, start + window), _window_mean(rows, n, -window, None))
                    for n in names} for label, rows in runs.items()}


def reward_trends(runs: dict[str, Sequence[dict]], out_dir: str | os.PathLike, start: int = 0, window: int = 5,
                  prefix: str = "reward/") -> str:
    """Each reward component of several runs (``{label: metrics rows}``), as logged (``reward/<name>``: the raw
    component, before normalisation): one PNG per component with a line per run, written to ``out_dir``, and a
    Markdown section with ``trend_means`` per run and component. Empty when no run logged one."""
    out = Path(out_dir)
    means = trend_means(runs, start, window, prefix)
    names = sorted({n for per_run in means.values() for n in per_run})
    if not names:
        return ""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Mean of each raw reward component over {window} iterations from iteration {start} (first) and over the "
             f"last {window} (last), per run.", "",
             "| run | " + " | ".join(f"{n} first → last" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for label, per_run in means.items():
        cells = ["-" if per_run.get(n, (None,))[0] is None else f"{per_run[n][0]:.3g} → {per_run[n][1]:.3g}"
                 for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        filename = f"{prefix}{n}".replace("/", "_") + ".png"
        _save_lines(out / filename, f"{prefix}{n} (raw, before normalisation)",
                    {label: series(rows, prefix + n) for label, rows in runs.items()})
        lines.append(f"![{prefix}{n}]({out.name}/{filename})")
    return "\n".join(lines) + "\n"


def run_costs(rows: Sequence[dict]) -> dict[str, float | None]:
    """A RL run's last logged KL to the reference and its mean seconds per iteration."""
    kl, steps = series(rows, "objective/kl")[1], series(rows, "time/step_s")[1]
    return {"kl_last": kl[-1] if kl else None, "s_per_iteration": sum(steps) / len(steps) if steps else None}
