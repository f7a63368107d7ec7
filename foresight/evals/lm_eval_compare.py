"""Run lm-evaluation-harness on exactly the MMLU items we score, to check that the two harnesses agree.

lm-eval is not a dependency (install it with the `compare` extra: `pip install -e '.[compare]'`). Its MMLU tasks
read the dataset from the Hugging Face hub, which is out of reach, so we write our items as local JSON files, one
pair (test: the scored items, dev: that subject's five examples) per subject, and one lm-eval task per subject
whose prompt settings are copied from lm-eval's own MMLU configs (its `_default_template_yaml` and each subject's
`description`). Only the data location differs from lm-eval's MMLU; the prompt is lm-eval's. The "hf" model of
lm-eval then reads the Hugging Face folder that `foresight export` writes, so both sides use the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from foresight.errors import ForesightError


def lm_eval_dir() -> Path:
    try:
        import lm_eval
    except ImportError:
        raise ForesightError("lm-evaluation-harness is not installed: pip install -e '.[compare]' "
                             "(lm-eval==0.4.13)") from None
    return Path(lm_eval.__file__).parent


def write_mmlu_tasks(items: list[dict], pool: dict[str, list[dict]], out: Path) -> list[str]:
    """lm-eval task configs (and their JSON data) for these MMLU items; returns the task names."""
    import yaml

    mmlu = lm_eval_dir() / "tasks" / "mmlu" / "default"
    template = yaml.safe_load((mmlu / "_default_template_yaml").read_text())
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for subject in sorted({it["subject"] for it in items}):
        slug = subject.replace(" ", "_")
        theirs = yaml.safe_load((mmlu / f"mmlu_{slug}.yaml").read_text())
        rows = lambda its: "".join(json.dumps({"question": it["question"], "choices": it["choices"],
                                              "answer": it["answer"], "subject": slug, "id": it["id"]}) + "\n"
                                   for it in its)
        (out / f"{slug}.test.jsonl").write_text(rows([it for it in items if it["subject"] == subject]))
        (out / f"{slug}.dev.jsonl").write_text(rows(pool.get(subject, [])))
        name = f"foresight_mmlu_{slug}"
        config = {k: v for k, v in template.items() if k not in ("dataset_path", "dataset_name")}
        config.update({
            "task": name,
            "description": theirs["description"],
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(out / f"{slug}.test.jsonl"),
                                              "dev": str(out / f"{slug}.dev.jsonl")}},
            "test_split": "test",
            "fewshot_split": "dev",
        })
        (out / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        names.append(name)
    return names


def make_lm(hf_folder: Path, batch_size: int = 1, device: str = "cpu"):
    """lm-eval's "hf" model over a Hugging Face folder, in float32."""
    lm_eval_dir()
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(hf_folder), dtype="float32", batch_size=batch_size, device=device)


def run_lm_eval(lm, task_dir: Path, names: list[str], shots: int) -> dict[str, dict]:
    """{item id: {"context", "logprobs", "prediction", "correct"}} from lm-eval's per-sample log."""
    lm_eval_dir()
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=shots, task_manager=manager,
                                  log_samples=True, bootstrap_iters=0, verbosity="WARNING")
    records = {}
    for name in names:
        for sample in out["samples"][name]:
            args = sample["arguments"]
            pairs = [a if isinstance(a, (list, tuple)) else (a["arg_0"], a["arg_1"]) for a in
                     (args.values() if isinstance(args, dict) else args)]
            logprobs = [float(r[0][0] if isinstance(r[0], (list, tuple)) else r[0]) for r in sample["resps"]]
            prediction = max(range(len(logprobs)), key=lambda i: logprobs[i])
            records[sample["doc"]["id"]] = {"context": pairs[0][0], "logprobs": logprobs, "prediction": prediction,
                                            "correct": prediction == sample["doc"]["answer"]}
    return records


def lm_eval_instances(task_dir: Path, names: list[str], shots: int) -> list:
    """lm-eval's own loglikelihood requests (Instances) for these tasks, built as its evaluator builds them: for
    timing its model alone, without task loading."""
    lm_eval_dir()
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict(names, TaskManager(include_path=str(task_dir), include_defaults=False))
    instances = []
    for name in names:
        task = tasks[name]
        task.set_config(key="num_fewshot", value=shots)
        task.build_all_requests(limit=None, rank=0, world_size=1)
        instances += task.instances
    return instances


def compare_mmlu(hf_folder: Path, work: Path, limit: int | None = None, shots: int = 0, batch_size: int = 8,
                 cache_dir: Path | None = None) -> dict:
    """Score the same MMLU items with lm-eval and with us; accuracies, their difference in points, and how many
    prompts and predicted answers are identical item by item."""
    import hashlib
    import time

    from foresight.data.prepare import default_root
    from foresight.evals.lm import EvalModel
    from foresight.evals.loaders import load_items
    from foresight.evals.runner import limit_items, run_task, split_pool
    from foresight.evals.spec import get_task

    cache_dir = cache_dir or default_root() / "cache"
    spec = get_task("mmlu")
    pool, scored = split_pool(spec, load_items("mmlu", cache_dir, {}, spec.path))
    items = limit_items(spec, scored, limit)
    names = write_mmlu_tasks(items, pool, work / "lm_eval_tasks")

    t0 = time.time()
    theirs = run_lm_eval(make_lm(hf_folder, batch_size=batch_size), work / "lm_eval_tasks", names, shots)
    t_theirs = time.time() - t0
    model = EvalModel(str(hf_folder), use_cache=False)
    t0 = time.time()
    ours = run_task(model, spec, cache_dir, shots, limit, progress=False)
    t_ours = time.time() - t0
    model.close()

    records = ours["items"]
    missing = [r["id"] for r in records if r["id"] not in theirs]
    if missing:
        raise ForesightError(f"lm-eval returned no result for {len(missing)} items (first: {missing[0]})")
    sha = lambda text: hashlib.sha1(text.encode()).hexdigest()[:16]
    acc_theirs = sum(theirs[r["id"]]["correct"] for r in records) / len(records)
    return {
        "n": len(records), "shots": shots, "subjects": len({r["group"] for r in records}),
        "acc_ours": ours["metrics"]["acc"], "acc_lm_eval": acc_theirs,
        "delta_points": 100 * (ours["metrics"]["acc"] - acc_theirs),
        "same_prompts": sum(sha(theirs[r["id"]]["context"]) == r["prompt_sha1"] for r in records),
        "same_predictions": sum(theirs[r["id"]]["prediction"] == r["prediction"] for r in records),
        "max_abs_logprob_diff": max(abs(a - b) for r in records
                                    for a, b in zip(r["logprobs"], theirs[r["id"]]["logprobs"])),
        "seconds_ours": round(t_ours, 1), "seconds_lm_eval": round(t_theirs, 1),
        "lm_eval_batch_size": batch_size,
    }
