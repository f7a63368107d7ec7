"""What every post-training run shares around the training loop: the output directory, the resolved config, the
device, the starting model and its chat template, the data files, and the exported model at the end.

A run directory holds config.toml (the resolved config), metrics.jsonl, tensorboard/, checkpoints/ (the loop's,
for --resume), summary.json, and model/: the trained weights as a Hugging Face folder with the tokenizer and chat
template. `foresight eval/chat/serve/sample RUN` load RUN/model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from foresight.config import dump_config
from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.model.chat_template import CHATML_TEMPLATE
from foresight.train.distributed import DistInfo, barrier
from foresight.train.trainer import autocast_context, check_out_dir, check_resume_config, pick_device
from foresight.weights.load import LoadedModel, RunTokenizer, load_model

MODEL_DIR = "model"  # the exported model inside a run directory
# The chat template a model trained here gets for post-training: ChatML with its end-of-text token closing each turn
# (so generation stops where a turn ends).
RUN_CHAT_TEMPLATE = CHATML_TEMPLATE.replace("'<|im_end|>'", "eos_token")
RUN_MARKERS = ("config.toml", "metrics.jsonl", "summary.json", "checkpoints", MODEL_DIR)


def start_run(cfg, schema, out: Path, resume: bool, info: DistInfo) -> None:
    check_out_dir(out, resume, RUN_MARKERS)
    if resume:
        check_resume_config(out, cfg, schema)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", dump_config(cfg))
    barrier(info)


def start(cfg, schema, out: Path, resume: bool, info: DistInfo):
    """What every post-training run does first: the run directory and its resolved config, the device, CPU
    threads, the autocast context. Returns (device, autocast)."""
    start_run(cfg, schema, out, resume, info)
    device = pick_device(cfg, info)
    cpu_threads(cfg, info, device)
    return device, autocast_context(cfg, device)


def trainable(model: torch.nn.Module) -> torch.nn.Module:
    """`model` in training mode with every weight trainable and contiguous: build_transformer stores weights
    column-major for fast CPU decoding; for training, plain contiguous storage is what the optimizer and the matmul
    backward expect."""
    for p in model.parameters():
        p.data = p.data.contiguous()
        p.requires_grad_(True)
    return model.train()


def load_base(spec: str, device: torch.device) -> LoadedModel:
    """The starting model, in float32 and training mode, with a chat template (a run trained here gets
    RUN_CHAT_TEMPLATE)."""
    loaded = load_model(spec, device=device)
    if loaded.tokenizer.chat_template is None:
        if not isinstance(loaded.tokenizer, RunTokenizer):
            raise ForesightError(f"{spec} has no chat template, and post-training needs one to format "
                                 f"conversations: add chat_template.jinja to its folder")
        loaded.tokenizer.chat_template = RUN_CHAT_TEMPLATE
    trainable(loaded.model)
    return loaded


def data_files(data_cfg, kind: str) -> tuple[Path, Path | None]:
    """(train, held-out) JSONL paths for "sft" or "pairs": the config's, or the built ones."""
    if data_cfg.train:
        train = Path(data_cfg.train)
        heldout = Path(data_cfg.heldout) if data_cfg.heldout else None
    else:
        from foresight.align.data import build

        directory = build(Path(data_cfg.root) if data_cfg.root else None)
        train = directory / f"{kind}_train.jsonl"
        heldout = Path(data_cfg.heldout) if data_cfg.heldout else directory / f"{kind}_heldout.jsonl"
    for path in (train, heldout):
        if path is not None and not path.is_file():
            raise ForesightError(f"data file not found: {path}")
    return train, heldout


def sample(records: list, limit: int, seed: int) -> list:
    """At most `limit` records (0 = all), a seeded sample kept in file order."""
    if not limit or limit >= len(records):
        return records
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
    return [records[i] for i in keep]


def _check_sources(key: str, named, sources: set) -> None:
    unknown = sorted(set(named) - sources)
    if unknown:  # a misspelt source would otherwise be capped (or not repeated) without a word
        raise ForesightError(f"data.{key}: no training example has source {', '.join(unknown)} "
                             f"(the sources are {', '.join(sorted(sources))})")


def select(records: list, data_cfg, seed: int) -> list:
    """The training records a config asks for: each source capped at data.max_per_source (except
    data.uncapped_sources), then at most data.max_examples in all (seeded samples kept in file order), then each
    record of a source in data.repeat that many times in a row (packing shuffles them apart)."""
    sources = {r.get("source", "") for r in records}
    _check_sources("uncapped_sources", data_cfg.uncapped_sources, sources)
    _check_sources("repeat", data_cfg.repeat, sources)
    if data_cfg.max_per_source:
        by_source: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_source.setdefault(r.get("source", ""), []).append(i)
        keep = []
        for k, (source, indices) in enumerate(sorted(by_source.items())):
            cap = 0 if source in data_cfg.uncapped_sources else data_cfg.max_per_source
            keep += sample(indices, cap, seed + k)
        records = [records[i] for i in sorted(keep)]
    records = sample(records, data_cfg.max_examples, seed)
    return [r for r in records for _ in range(data_cfg.repeat.get(r.get("source", ""), 1))]


def export_model(loaded: LoadedModel, out: Path) -> Path:
    """Write the trained weights as RUN/model (replacing an earlier export of the same run)."""
    from foresight.weights.export import write_hf_folder

    target = out / MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    loaded.model.eval()
    return write_hf_folder(loaded, target)


def write_summary(out: Path, summary: dict) -> None:
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")


def cpu_threads(cfg, info: DistInfo, device: torch.device) -> None:
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads or max(1, (os.cpu_count() or 1) // info.local_world_size))


def run_with_processes(cfg, body, out: Path, resume: bool, progress: bool):
    """Call body(cfg, out, resume, progress, info) inside this process's share of a torchrun job (or alone)."""
    from foresight.train.distributed import init_distributed, shutdown

    info = init_distributed("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return body(cfg, Path(out), resume, progress, info)
    finally:
        shutdown(info)


def step_order(n: int, seed: int, step: int, batch_size: int, first: int, count: int) -> list[int]:
    """Indices (into n examples) of positions first .. first+count-1 of optimizer step `step`: the steps walk
    through a concatenation of per-epoch seeded permutations, so a step's examples are a function of the step alone
    (what makes --resume exact)."""
    out, permutations = [], {}
    for k in range(step * batch_size + first, step * batch_size + first + count):
        epoch, index = divmod(k, n)
        if epoch not in permutations:  # a step spans at most two epochs: one permutation each, not one per example
            permutations[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(permutations[epoch][index]))
    return out
