"""Data parallelism: the process group that `torchrun` describes, and `parallelize`, the one place a model is wrapped
for it. The model never sees any of this: the training loop wraps it from outside."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from foresight.errors import ForesightError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on GPU)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
    )
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def parallelize(model: torch.nn.Module, info: DistInfo, compile: bool = False):
    """(wrapped, forward): the model wrapped for data parallelism (DDP when there are several processes, else the model
    itself), and what the loop calls for a forward pass (the wrapped model, compiled with torch.compile if asked).
    Gradients are averaged across processes in the backward pass; the optimizer keeps working on `model`'s own
    parameters, which DDP shares."""
    wrapped = DistributedDataParallel(model) if info.enabled else model
    return wrapped, (torch.compile(wrapped) if compile else wrapped)


def no_sync(wrapped: torch.nn.Module):
    """A context in which backward passes accumulate gradients locally, without the all-reduce: for every
    micro-batch of a step but the last."""
    return wrapped.no_sync() if isinstance(wrapped, DistributedDataParallel) else contextlib.nullcontext()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def micro_batches(train_cfg, info: DistInfo) -> tuple[int, int]:
    """(examples per process per step, examples per micro-batch) for the global train.batch_size, or a
    ForesightError naming the key that does not divide."""
    t = train_cfg
    if t.batch_size % info.world_size:
        raise ForesightError(f"train.batch_size ({t.batch_size}) must be divisible by the {info.world_size} processes")
    per_process = t.batch_size // info.world_size
    micro = t.micro_batch_size or per_process
    if per_process % micro:
        raise ForesightError(f"train.micro_batch_size ({micro}) must divide the per-process batch ({per_process})")
    return per_process, micro
