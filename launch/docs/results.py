"""Result tables rendered from committed result files, so that no number in the docs is copied by hand.

A record (``docs/results/records/<name>.json``) is the file a run wrote, trimmed to what a table needs, with the
run's provenance (``launch.provenance``): command, resolved config, commit, machine, date, wall time.
``make_record`` builds one from a run's result file. A Markdown page shows a record where it holds a block

    <!-- result: NAME -->            (or <!-- result: NAME VIEW -->, e.g. VIEW = headline)
    ...rendered here; edits are overwritten...
    <!-- /result -->

``render_pages`` re-renders every block of README.md and docs/**/*.md from its record; with ``check=True`` it
writes nothing and returns the pages whose blocks are stale. ``p2bot docs results`` runs it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from data_prep.files.json_file import read_json_object

RECORDS_DIR = Path("docs") / "results" / "records"
ABLATIONS_FILE = Path("docs") / "results" / "ablations.yaml"
BLOCK = re.compile(r"(<!-- result: (?P<name>[\w.-]+)(?: (?P<view>[\w.-]+))? -->\n)(?P<body>.*?)(<!-- /result -->)",
                   re.S)
KINDS = ("table", "selfplay", "bench_eval", "bench_selfplay", "bench_receiver", "bench_options", "bench_profile",
         "bench_profile_compare", "bench_anchor", "recipe", "recipe_results")
# result file name a run writes -> record kind
RESULT_FILES = {"selfplay_results.json": "selfplay", "bench_eval.json": "bench_eval",
                "bench_selfplay.json": "bench_selfplay", "bench_receiver.json": "bench_receiver",
                "bench_options.json": "bench_options", "bench_profile.json": "bench_profile",
                "bench_profile_compare.json": "bench_profile_compare", "bench_anchor.json": "bench_anchor",
                "recipe.json": "recipe", "recipe_results.json": "recipe_results"}


class RecordError(ValueError):
    pass


# --- records ---


def load_record(name: str, root: str | os.PathLike = ".") -> dict:
    """The record ``name`` under ``root``, checked for the fields every record has."""
    path = Path(root) / RECORDS_DIR / f"{name}.json"
    record = read_json_object(path, ("name", "title", "kind", "provenance", "result"), "a result record", RecordError)
    if record["kind"] not in KINDS:
        raise RecordError(f"{path}: field 'kind': {record['kind']!r}, expected one of {', '.join(KINDS)}")
    for key in ("command", "commit", "machine", "date", "origin"):
        if not record["provenance"].get(key):
            raise RecordError(f"{path}: field 'provenance.{key}' is missing")
    return record


def make_record(result_path: str | os.PathLike, name: str, title: str) -> dict:
    """A record from the result file a run wrote (``selfplay_results.json``, ``bench_*.json``): its provenance and
    the numbers its table needs (dialogue transcripts and per-pair tallies stay in the run folder)."""
    path = Path(result_path)
    kind = RESULT_FILES.get(path.name)
    if kind is None:
        raise RecordError(f"{path}: not a result file p2bot writes (expected one of {', '.join(RESULT_FILES)})")
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RecordError(f"{path}: cannot read the result file: {err}") from None
    provenance = result.pop("provenance", None)
    if not provenance:
        raise RecordError(f"{path}: field 'provenance' is missing (written by p2bot from this version on)")
    provenance = {k: v for k, v in provenance.items() if k != "machine_details"} | {
        "machine_details": provenance.get("machine_details")}
    if kind == "selfplay":
        result = {k: result[k] for k in ("models", "labels", "data", "num_pairs", "dialogues_per_pair", "exchanges",
                                         "judges", "summaries", "comparison", "seconds", "warnings") if k in result}
    if kind == "bench_anchor":  # per-iteration trainer statistics stay in the run folder
        for it in result.get("p2bot", {}).get("iterations", []):
            it.pop("stats", None)
    return {"name": name, "title": title, "kind": kind, "provenance": provenance, "result": result}


def write_record(record: dict, root: str | os.PathLike = ".") -> Path:
    from data_prep.files.atomic import write_text_atomic

    path = Path(root) / RECORDS_DIR / f"{record['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(record, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


# --- tables ---


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    cell = lambda v: "-" if v is None else str(v).replace("|", "\\|")  # noqa: E731
    return "\n".join(["| " + " | ".join(map(cell, columns)) + " |", "|" + " --- |" * len(columns),
                      *("| " + " | ".join(map(cell, row)) + " |" for row in rows)])


def _table(result: dict, view: str | None) -> str:
    if view == "headline":
        return _table_headline(result)
    parts = [f"*{result['caption']}*"] if result.get("caption") else []
    parts.append(markdown(result["columns"], result["rows"]))
    if result.get("notes"):
        parts.append(result["notes"])
    return "\n\n".join(parts)


def _table_headline(result: dict) -> str:
    """One bullet per ``headline`` row of the table: its label and the cells of the named columns."""
    spec = result.get("headline")
    if not spec:
        raise RecordError("view 'headline': this record has no 'headline' list of rows")
    columns = result["columns"]
    lines = []
    for item in spec:
        row = next((r for r in result["rows"] if str(r[0]).startswith(item["row"])), None)
        if row is None:
            raise RecordError(f"headline: no row starting with {item['row']!r}")
        cells = [f"{c} {row[columns.index(c)]}" for c in item["columns"]]
        lines.append(f"- {row[0]}: " + "; ".join(cells))
    return "\n".join(lines)


def _pct(c: dict) -> str:
    if c.get("rel") is None or math.isnan(c["rel"]):
        return "-"
    return f"{100 * c['rel']:+.1f}% (95% CI {100 * c['rel_low']:+.1f} .. {100 * c['rel_high']:+.1f})"


def _selfplay(result: dict, view: str | None) -> str:
    from rl.evaluation.stats import comparison_table, summary_table

    labels = result["labels"]
    head = (f"*{result['num_pairs']} held-out persona pairs × {result['dialogues_per_pair']} dialogues × "
            f"{result['exchanges']} exchanges, data {portable(str(result['data']))}; judges: persona encoder "
            f"{result['judges']['encoder']}, LM {result['judges']['lm']}; paired bootstrap over pairs*")
    comparison = result.get("comparison")
    if view == "headline":
        if not comparison:
            raise RecordError("view 'headline' needs a comparison of two models")
        c = comparison
        return "\n".join([
            f"- judge persona Hits@1: {labels[1]} {c['perceive_hits1']['b']:.3f} → {labels[0]} "
            f"{c['perceive_hits1']['a']:.3f}, {_pct(c['perceive_hits1'])}",
            f"- judge PPL: {c['judge_ppl']['b']:.2f} → {c['judge_ppl']['a']:.2f}, {_pct(c['judge_ppl'])}",
            f"- copy rate: {c['copy_rate']['b']:.3f} → {c['copy_rate']['a']:.3f}; echo rate: "
            f"{c['echo_rate']['b']:.3f} → {c['echo_rate']['a']:.3f}"])
    if comparison:
        body = comparison_table(labels[0], labels[1], comparison)
    else:
        body = summary_table(labels[0], result["summaries"][labels[0]])
    return head + "\n\n" + body


def _bench_eval(r: dict, view: str | None) -> str:
    rows = [[name, f"{r[k]['examples_per_s']:.3f}", f"{r[k]['seconds']:.1f}", f"{100 * r[k]['f1']:.2f}",
             f"{r[k]['peak_rss_mb']:.0f} MB"]
            for name, k in (("p2bot: batched, left-padded, KV-cached generation", "ours"),
                            ("seed-style: one example at a time, no KV cache", "seed_style"))]
    return (f"*{r['model']}, {r['num_examples']} examples, {r['max_new_tokens']} new tokens, {r['torch_threads']} "
            f"threads, mean context {r['mean_context_tokens']:.0f} tokens*\n\n"
            + markdown(["method", "examples/s", "seconds", "F1", "peak RSS"], rows)
            + f"\n\n{r['speedup']:.1f}x faster; identical outputs on {100 * r['same_outputs']:.0f}% of the examples.")


def _bench_selfplay(r: dict, view: str | None) -> str:
    parts = []
    if view in (None, "rollout"):
        names = (("p2bot: all dialogues of a turn batched, each speaker's KV cache reused across its turns", "ours"),
                 ("p2bot without cross-turn reuse (`reuse_kv_cache: false`)", "ours_no_reuse"),
                 ("seed-style: one dialogue at a time, history re-encoded, no KV cache", "seed_style"))
        rows = [[n, f"{r[k]['tokens_per_s']:.1f}", r[k]["tokens"], f"{r[k]['seconds']:.1f}"] for n, k in names if k in r]
        note = (f"Cross-turn cache reuse: {r['reuse_speedup']:.2f}x. Without it, prompt encoding takes "
                f"{100 * r['prefill_share']:.0f}% of generation time, and {100 * r['reusable_share']:.0f}% of the "
                "prompt tokens are already in the speaker's cache from its previous turn.")
        if "speedup" in r:
            note = f"{r['speedup']:.1f}x the seed-style loop. " + note
        parts += [f"*{r['model']}: {r['dialogues']} dialogues, {r['turns']} turns, ≤ {r['response_length']} tokens per "
                  f"turn, mean prompt {r['mean_prompt_tokens']:.0f} tokens, {r['torch_threads']} threads*",
                  markdown(["self-play", "tokens/s", "tokens", "seconds"], rows), note]
    if view in (None, "update") and r.get("update"):
        rows = [[m, f"{u['trainable_parameters'] / 1e6:.1f} M", f"{u['seconds_per_step']:.1f}",
                 f"{u['tokens_per_s']:.1f}", f"{u['peak_rss_mb']:,.0f} MB"] for m, u in r["update"].items()]
        parts += [f"*One PPO step over the {r['turns']} rollouts, micro-batches of "
                  f"{next(iter(r['update'].values()))['micro_batch_size']}, each mode in a fresh process*",
                  markdown(["update mode", "trainable parameters", "s/step", "tokens/s", "peak RSS"], rows)]
    if view in (None, "layouts") and r.get("layouts"):
        rows = []
        for n, runs in r["layouts"].items():
            for layout in ("turn", "speaker"):
                u = runs[layout]
                rows.append([n, layout, u["rows"], f"{u['seconds_per_step']:.1f}", f"{u['trained_tokens_per_s']:.1f}",
                             f"{u['peak_rss_mb']:,.0f} MB", f"{runs['speedup']:.2f}x" if layout == "speaker" else ""])
        parts += ["*The same rollouts trained with one row per turn and with one row per speaker episode, full model, "
                  "each in a fresh process*",
                  markdown(["exchanges", "layout", "rows", "s/step", "trained tokens/s", "peak RSS", "speedup"], rows)]
    return "\n\n".join(parts)


def _bench_receiver(r: dict, view: str | None) -> str:
    rows = [["batched, cold persona cache", f"{r['cold_utt_per_s']:.0f}", f"{r['cold_seconds']:.2f}"],
            ["batched, warm persona cache", f"{r['warm_utt_per_s']:.0f}", f"{r['warm_seconds']:.2f}"]]
    if "seed_style_utt_per_s" in r:
        rows.append([f"seed-style, one at a time ({r['seed_style_utterances']} utterances)",
                     f"{r['seed_style_utt_per_s']:.0f}", "-"])
    note = (f"\n\nBatched with a cold cache is {r['speedup_cold_vs_seed_style']:.1f}x the seed-style loop."
            if "speedup_cold_vs_seed_style" in r else "")
    return (f"*{r['utterances']} utterances against their speakers' personas ({r['distinct_persona_sentences']} "
            f"distinct persona sentences), batch {r['batch_size']}, {r['threads']} threads*\n\n"
            + markdown(["receiver scoring", "utterances/s", "seconds"], rows) + note)


def _bench_options(r: dict, view: str | None) -> str:
    from launch.bench_rl_options import table

    return f"*task {r['task']}, {r['max_steps']} iterations per variant, start model {r['start_model']}*\n\n" + table(r)


def _bench_profile(r: dict, view: str | None) -> str:
    return (f"*{r['steps']} profiled iteration(s), {r['dialogues_per_step']} dialogues per step: "
            f"{r['iteration_s']:.1f} s per iteration; shares are of the iteration, peak RSS is the process's*\n\n"
            + r["table"])


def _bench_profile_compare(r: dict, view: str | None) -> str:
    return (f"*each run profiled on its own, one after the other; seconds per iteration are the mean of "
            f"{r['runs'][0]['steps']} iteration(s)*\n\n" + r["table"])


def _bench_anchor(report: dict, view: str | None) -> str:
    """p2bot beside TRL 1.12's PPO (``p2bot bench anchor``): s/iteration and peak RSS, ratios and targets."""
    ours, anchor, ratios, setup = report["p2bot"], report.get("anchor"), report.get("ratios"), report["setup"]
    head = f"*PPO, {setup['iters']} iterations x {setup['epochs']} epochs, batch {setup['batch_size']}, at most " \
           f"{setup['response_length']} new tokens, {setup['torch_threads']} thread(s); peak RSS: ru_maxrss, model " \
           f"loading included*\n\n"
    columns = ["", "p2bot"] + (["TRL 1.12", "p2bot / TRL", "target", "met"] if anchor else [])
    rows = []
    for label, key, akey in (("s per iteration", "seconds_per_iteration", "per_iter_s"),
                             ("peak RSS (GB)", "peak_rss_gb", "peak_rss_gb")):
        row = [label, f"{ours[key]:.2f}"]
        if anchor:
            r = ratios[key]
            row += [f"{anchor[akey]:.2f}", f"{r['ratio']:.2f}x", f"<= {r['target']:.2f}x",
                    "yes" if r["meets_target"] else "no"]
        rows.append(row)
    return head + markdown(columns, rows)


def _recipe(r: dict, view: str | None) -> str:
    """``p2bot recipe``'s ``recipe.json``: wall-clock time of each step of the run (stages side by side count once)
    and each stage's own time."""
    wall, seconds = r.get("wall_seconds", {}), r.get("seconds", {})
    rows = [[step, _duration(s), " + ".join(f"{name} {_duration(seconds[name])}" for name in step.split("+")
                                            if name in seconds and "+" in step)]
            for step, s in wall.items()]
    rows.append(["**whole recipe**", f"**{_duration(sum(wall.values()))}**", ""])
    return (f"*`p2bot recipe`, {r['config']}: wall-clock time per step of the run; stages joined by + ran side by "
            "side*\n\n" + markdown(["step", "wall clock", "each stage"], rows))


def _recipe_results(r: dict, view: str | None) -> str:
    """``p2bot recipe``'s ``recipe_results.json``: every policy (each RL seed, the average) against SFT on the targets
    of ``rl.evaluation.targets``; view ``trends``: the raw reward components, early and late, per RL run."""
    from rl.evaluation.targets import check_gold_targets, check_targets

    if view == "gold":  # the first policy's (the average's) held-out-turn comparison in full
        from models.scoring.gold_compare import gold_comparison_table

        name, p = next((n, p) for n, p in r["policies"].items() if p.get("gold"))
        return (f"*{name} against SFT on the held-out dialogues' own turns (greedy F1, Hits@1 among 20 candidates, "
                "gold-response perplexity); paired bootstrap over dialogues*\n\n"
                + gold_comparison_table(name, "SFT", p["gold"]))
    if view == "trends":
        t = r["reward_trends"]
        names = sorted({n for per_run in t["means"].values() for n in per_run})
        rows = [[run, *("-" if means.get(n, [None])[0] is None else f"{means[n][0]:.3g} → {means[n][1]:.3g}"
                        for n in names)] for run, means in t["means"].items()]
        return (f"*Mean of each raw reward component (before normalisation) over {t['window']} iterations from iteration "
                f"{t['start']} and over the last {t['window']}, per RL run*\n\n" + markdown(["run", *names], rows))

    def met(targets) -> str:
        known = [t for t in targets if t.met is not None]
        return f"{sum(bool(t.met) for t in known)} of {len(targets)}" if known else "-"

    if view == "headline":  # one line per policy: how many targets it meets
        return "\n".join(f"- {name}: {met(check_targets(p.get('selfplay') or {}))} self-play targets, "
                         f"{met(check_gold_targets(p.get('gold') or {}))} gold-turn targets"
                         for name, p in r["policies"].items())
    rows = []
    for name, p in r["policies"].items():
        sp, gold = p.get("selfplay") or {}, p.get("gold") or {}
        cell = lambda c, key: "-" if key not in c or math.isnan(c[key]["rel"]) else (  # noqa: E731
            f"{100 * c[key]['rel']:+.1f}% ({100 * c[key]['rel_low']:+.1f} .. {100 * c[key]['rel_high']:+.1f})")
        diff = lambda c, key: "-" if key not in c else (  # noqa: E731
            f"{c[key]['diff']:+.4f} ({c[key]['low']:+.4f} .. {c[key]['high']:+.4f})")
        vs = lambda c, key: "-" if key not in c else f"{c[key]['a']:.3f} vs {c[key]['b']:.3f}"  # noqa: E731
        rows.append([name, cell(sp, "perceive_hits1"), cell(sp, "lexical_hits1"), cell(sp, "lm_persona_hits1"),
                     cell(sp, "judge_ppl"),
                     vs(sp, "copy_rate"), vs(sp, "echo_rate"), met(check_targets(sp)), diff(gold, "f1"),
                     cell(gold, "ppl"), vs(gold, "hits1_nup"), met(check_gold_targets(gold)),
                     "-" if p.get("kl_last") is None else f"{p['kl_last']:.2f}",
                     "-" if p.get("s_per_iteration") is None else f"{p['s_per_iteration']:.1f}"])
    return ("*Each policy against its SFT start. Self-play: held-out persona pairs, paired bootstrap over pairs, "
            "relative change (95% CI); persona Hits@1 by three judges RL never optimised: the untrained MiniLM encoder "
            "(judge), TF-IDF word overlap, and the untuned LM's persona likelihood (- where not run); the four targets "
            "are judge Hits@1 ≥ +20% with CI > 0, judge PPL < +10%, copy "
            "and echo ≤ SFT. Gold turns: held-out dialogues' own turns, paired bootstrap over dialogues; the three "
            "targets are F1 ≥ SFT − 0.01, gold PPL ≤ +5%, NUP Hits@1 ≥ SFT. KL: the run's last logged KL to the "
            "reference (nats per turn)*\n\n"
            + markdown(["policy", "judge Hits@1", "TF-IDF Hits@1", "LM-judge Hits@1", "judge PPL", "copy", "echo",
                        "four targets",
                        "gold F1 diff", "gold PPL", "NUP Hits@1", "gold targets", "KL", "s/iteration"], rows))


RENDERERS: dict[str, Callable[[dict, str | None], str]] = {
    "table": _table, "selfplay": _selfplay, "bench_eval": _bench_eval, "bench_selfplay": _bench_selfplay,
    "bench_receiver": _bench_receiver, "bench_options": _bench_options, "bench_profile": _bench_profile,
    "bench_profile_compare": _bench_profile_compare, "bench_anchor": _bench_anchor, "recipe": _recipe,
    "recipe_results": _recipe_results}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h} h {m} min" if h else (f"{m} min {s} s" if m else f"{s} s")


SHARED_DATA = re.compile(r"(?:\.\./|/[\w.-]+/)*shared/data/[\w.-]+/")
SHARED_ANCHORS = re.compile(r"(?:\.\./|/[\w.-]+/)*shared/anchors/")
HOME = re.compile(r"/root/|/home/[\w.-]+/")


def portable(text: str) -> str:
    """Paths of the machine a run used, shown as a user would have them: its data folder as ``data/FILE`` (where the
    docs' example configs expect a user's copy), its benchmark scripts by file name, its home folder as ``~/``; the
    record keeps the paths as run."""
    return HOME.sub("~/", SHARED_ANCHORS.sub("", SHARED_DATA.sub("data/", text)))


def provenance_lines(record: dict, page_dir: Path, root: Path) -> str:
    """The footer of a rendered table: command, commit, machine, date, wall time, result file, resolved config."""
    p = {**record["provenance"], "command": portable(record["provenance"]["command"])}
    link = os.path.relpath(root / RECORDS_DIR / f"{record['name']}.json", page_dir)
    lines = [f"Command: `{p['command']}`  ",
             f"Commit `{p['commit'][:12]}` · {p['machine']} · {str(p['date'])[:10]} · wall time "
             f"{_duration(p.get('wall_time_s'))} · result file [{record['name']}.json]({link})"]
    if p["origin"] != "run":
        lines[-1] += "  "
        lines.append(f"Transcribed, not written by the run: {p.get('origin_note', '')}".rstrip())
    config = p.get("config")
    if isinstance(config, dict):
        dumped = portable(yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True).rstrip())
        lines += ["", "<details><summary>resolved config</summary>", "", "```yaml", dumped, "```", "", "</details>"]
    elif config:
        lines[-1] += "  "
        lines.append(f"Config: `{config}` at that commit")
    return "\n".join(lines)


def render(record: dict, view: str | None, page_dir: Path, root: Path) -> str:
    body = RENDERERS[record["kind"]](record["result"], view)
    if view == "headline":
        p = {**record["provenance"], "command": portable(record["provenance"]["command"])}
        link = os.path.relpath(root / RECORDS_DIR / f"{record['name']}.json", page_dir)
        return (f"{body}\n\n`{p['command']}` · commit `{p['commit'][:12]}` · {p['machine']} · {str(p['date'])[:10]} · "
                f"wall time {_duration(p.get('wall_time_s'))} · [result file]({link})")
    return f"**{record['title']}**\n\n{body}\n\n{provenance_lines(record, page_dir, root)}"


# --- the ablation history ---

ABLATION_COLUMNS = ("variant", "config diff", "command", "result", "verdict", "superseded by")


def render_ablations(root: Path) -> str:
    path = root / ABLATIONS_FILE
    rows = yaml.safe_load(path.read_text()) or []
    if not isinstance(rows, list):
        raise RecordError(f"{path}: expected a list of variants")
    out = []
    for i, row in enumerate(rows):
        missing = [k for k in ("id", "variant", "config_diff", "command", "result", "verdict", "superseded_by", "commit")
                   if not row.get(k)]
        if missing:
            raise RecordError(f"{path}: item {i} ({row.get('id', '?')}): field '{missing[0]}' is missing")
        verdict = f"{row['verdict']}: {row['why']}" if row.get("why") else row["verdict"]
        out.append([f"**{row['id']}** {row['variant']}", f"`{row['config_diff']}`", f"`{row['command']}`",
                    f"{row['result']} ({row.get('pairs', '')}; commit `{row['commit']}`)".replace(" (; ", " ("),
                    verdict, row["superseded_by"]])
    return markdown(list(ABLATION_COLUMNS), out)


# --- pages ---


def pages(root: str | os.PathLike = ".") -> list[Path]:
    root = Path(root)
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def render_page(text: str, page: Path, root: Path) -> str:
    def fill(m: re.Match) -> str:
        name, view = m["name"], m["view"]
        body = (render_ablations(root) if name == "ablations"
                else render(load_record(name, root), view, page.parent, root))
        return f"{m.group(1)}{body}\n{m.group(5)}"

    return BLOCK.sub(fill, text)


def render_pages(root: str | os.PathLike = ".", check: bool = False) -> list[Path]:
    """Re-render every result block of README.md and docs/**/*.md; returns the pages that changed (with
    ``check``: that would change, nothing written)."""
    from data_prep.files.atomic import write_text_atomic

    root = Path(root)
    changed = []
    for page in pages(root):
        text = page.read_text()
        new = render_page(text, page, root)
        if new != text:
            changed.append(page)
            if not check:
                write_text_atomic(page, new)
    return changed


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    """The (name, view, rendered body) of every result block in ``text``."""
    return [(m["name"], m["view"], m["body"]) for m in BLOCK.finditer(text)]


# --- commands: p2bot docs results | record ---


def results_parser():
    import argparse

    p = argparse.ArgumentParser(prog="p2bot docs results", allow_abbrev=False,
                                description="Re-render every result block of README.md and docs/**/*.md from "
                                            "docs/results/records/ (and docs/results/ablations.yaml).")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is stale")
    p.add_argument("--root", default=".", help="the repository root")
    return p


def results_command(argv: list[str]) -> int:
    """``p2bot docs results [--check] [--root DIR]``."""
    import sys

    args = results_parser().parse_args(argv)
    try:
        changed = render_pages(args.root, check=args.check)
    except RecordError as err:
        print(f"p2bot docs results: error: {err}", file=sys.stderr)
        return 1
    for page in changed:
        print(f"{'stale' if args.check else 'rendered'}: {page}")
    if args.check and changed:
        print("p2bot docs results: result blocks are stale; run `p2bot docs results`", file=sys.stderr)
        return 1
    if not changed:
        print("p2bot docs results: every result block is current")
    return 0


def record_parser():
    import argparse

    p = argparse.ArgumentParser(prog="p2bot docs record", allow_abbrev=False,
                                description="Commit-ready record of a run's result file: its numbers and provenance, "
                                            "written to docs/results/records/NAME.json.")
    p.add_argument("result", help=f"a result file a run wrote ({', '.join(RESULT_FILES)})")
    p.add_argument("--name", required=True, help="the record's name: a page shows it with <!-- result: NAME -->")
    p.add_argument("--title", required=True, help="the table's title")
    p.add_argument("--root", default=".", help="the repository root")
    return p


def record_command(argv: list[str]) -> int:
    """``p2bot docs record RESULT_FILE --name NAME --title TITLE``."""
    import sys

    p = record_parser()
    args = p.parse_args(argv)
    if not re.fullmatch(r"[\w.-]+", args.name):
        p.error(f"--name {args.name!r}: letters, digits, '.', '-' and '_' only")
    try:
        path = write_record(make_record(args.result, args.name, args.title), args.root)
    except (RecordError, OSError) as err:
        print(f"p2bot docs record: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}; show it in a page with <!-- result: {args.name} --> ... <!-- /result -->, "
          "then run `p2bot docs results`")
    return 0


PARSERS = {"results_command": results_parser, "record_command": record_parser}  # for launch.docs.parsers
