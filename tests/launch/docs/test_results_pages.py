"""Result tables in README.md and docs/ are rendered from committed result files, never typed by hand."""

import json
import re
from pathlib import Path

import pytest
import yaml

from launch.docs.results import (
    ABLATIONS_FILE,
    RECORDS_DIR,
    RecordError,
    blocks,
    load_record,
    make_record,
    render_ablations,
    render_pages,
    write_record,
)

REPO = Path(__file__).resolve().parents[3]
NUMBER = re.compile(r"[+−-]?\d+(?:\.\d+)?%?")


def test_every_result_block_in_readme_and_docs_is_current():
    stale = render_pages(REPO, check=True)
    assert not stale, f"stale result blocks (run `p2bot docs results`): {[str(p.relative_to(REPO)) for p in stale]}"


def test_every_record_loads_and_names_its_provenance():
    names = [p.stem for p in (REPO / RECORDS_DIR).glob("*.json")]
    assert "recipe_p2_spc" in names
    for name in names:
        record = load_record(name, REPO)
        assert record["name"] == name
        if record["provenance"]["origin"] != "run":
            assert record["provenance"].get("origin_note"), f"{name}: a transcribed record says where from"


def test_readme_headline_numbers_equal_the_result_file():
    readme = (REPO / "README.md").read_text()
    headline = [(name, body) for name, view, body in blocks(readme) if view == "headline"]
    assert headline, "README.md has a headline result block"
    name, body = headline[0]
    result = load_record(name, REPO)["result"]
    columns = result["columns"]
    shown = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(shown) == len(result["headline"])
    for item, line in zip(result["headline"], shown):
        row = next(r for r in result["rows"] if r[0].startswith(item["row"]))
        expected = [n for c in item["columns"] for n in NUMBER.findall(str(row[columns.index(c)]))]
        shown_cells = line.split(":", 1)[1]
        for column in item["columns"]:  # a column's own label may hold numbers ("95% CI")
            shown_cells = shown_cells.replace(column, "")
        assert NUMBER.findall(shown_cells) == expected, line


def _bench_eval_file(tmp_path: Path, provenance: bool = True) -> Path:
    run = {"model": "embedded", "num_examples": 4, "max_new_tokens": 8, "batch_size": 4, "torch_threads": 2,
           "mean_context_tokens": 90.0, "speedup": 7.25, "same_outputs": 1.0,
           "ours": {"seconds": 2.0, "examples_per_s": 2.0, "f1": 0.2, "peak_rss_mb": 1000.0},
           "seed_style": {"seconds": 14.5, "examples_per_s": 0.276, "f1": 0.2, "peak_rss_mb": 1001.0}}
    if provenance:
        run["provenance"] = {"command": "p2bot bench eval --num_examples 4", "config": {"num_examples": 4},
                             "commit": "0123456789abcdef", "machine": "test CPU, 2 logical CPUs", "machine_details": {},
                             "date": "2026-12-02T10:00:00+00:00", "wall_time_s": 75.0, "origin": "run"}
    path = tmp_path / "run" / "bench_eval.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run))
    return path


def test_a_run_file_becomes_a_record_and_a_stale_block_is_found_and_rerendered(tmp_path):
    record = make_record(_bench_eval_file(tmp_path), "bench_eval_test", "Evaluation throughput")
    write_record(record, tmp_path)
    page = tmp_path / "docs" / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- result: bench_eval_test -->\nold numbers\n<!-- /result -->\n")
    assert render_pages(tmp_path, check=True) == [page]
    assert "old numbers" in page.read_text()  # check mode writes nothing
    assert render_pages(tmp_path) == [page]
    text = page.read_text()
    assert "| p2bot: batched, left-padded, KV-cached generation | 2.000 |" in text
    assert "7.2x faster" in text and "Command: `p2bot bench eval --num_examples 4`" in text
    assert "Commit `0123456789ab`" in text and "wall time 1 min 15 s" in text
    assert "](../docs/results/records/bench_eval_test.json)" in text or "](results/records/bench_eval_test.json)" in text
    assert "num_examples: 4" in text  # the resolved config
    assert render_pages(tmp_path, check=True) == []


def test_a_recipes_timings_render_per_step_and_in_total(tmp_path):
    run = {"config": "launch/configs/experiments/p2_spc.yaml",
           "seconds": {"sft": 1300.0, "receiver": 1037.8, "rl-seed0": 1850.0, "rl-seed1": 1900.0, "eval": 700.0},
           "wall_seconds": {"sft+receiver": 1300.0, "rl-seed0+rl-seed1": 1900.0, "eval": 700.0},
           "provenance": {"command": "p2bot recipe --config launch/configs/experiments/p2_spc.yaml", "config": {},
                          "commit": "0123456789abcdef", "machine": "test CPU", "machine_details": {},
                          "date": "2026-12-03T10:00:00+00:00", "wall_time_s": 2600.0, "origin": "run"}}
    path = tmp_path / "run" / "recipe.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run))
    write_record(make_record(path, "recipe_time_test", "Recipe time"), tmp_path)
    page = tmp_path / "docs" / "recipe.md"
    page.write_text("<!-- result: recipe_time_test -->\n<!-- /result -->\n")
    render_pages(tmp_path)
    text = page.read_text()
    assert "| sft+receiver | 21 min 40 s | sft 21 min 40 s + receiver 17 min 18 s |" in text
    assert "| rl-seed0+rl-seed1 | 31 min 40 s | rl-seed0 30 min 50 s + rl-seed1 31 min 40 s |" in text
    assert "| eval | 11 min 40 s |  |" in text
    assert "| **whole recipe** | **1 h 5 min** |  |" in text  # 1300 + 1900 + 700 s: side-by-side stages once


def test_bad_files_are_refused_naming_file_and_field(tmp_path):
    with pytest.raises(RecordError, match=r"bench_eval.json: field 'provenance' is missing"):
        make_record(_bench_eval_file(tmp_path, provenance=False), "x", "x")
    with pytest.raises(RecordError, match=r"not a result file"):
        make_record(tmp_path / "metrics.jsonl", "x", "x")
    (tmp_path / RECORDS_DIR).mkdir(parents=True)
    (tmp_path / RECORDS_DIR / "broken.json").write_text('{"name": "broken",\n "title": }')
    with pytest.raises(RecordError, match=r"broken.json: line 2: not valid JSON"):
        load_record("broken", tmp_path)
    (tmp_path / ABLATIONS_FILE).write_text(yaml.safe_dump([{"id": "a", "variant": "v"}]))
    with pytest.raises(RecordError, match=r"ablations.yaml: item 0 \(a\): field 'config_diff' is missing"):
        render_ablations(tmp_path)


def test_rendered_paths_into_a_machines_data_folder_read_as_data_files():
    from launch.docs.results import portable

    assert portable("--data ../shared/data/synthetic-persona-chat/x.csv") == "--data data/x.csv"
    assert portable("data: /work/shared/data/spc/x.csv") == "data: data/x.csv"
    assert portable("--data runs/shared_data/x.csv") == "--data runs/shared_data/x.csv"
    assert portable("--anchor_script /work/shared/anchors/a.py --anchor_python /root/v/bin/python") == \
        "--anchor_script a.py --anchor_python ~/v/bin/python"
