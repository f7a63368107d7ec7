"""Data parallelism: the process group that `torchrun` describes, and `parallelize`, the one place a model is wrapped
for it (DDP or FSDP2, activation checkpointing, torch.compile). The model never sees any of this: the training loop
wraps it from outside."""

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


def parallelize(model: torch.nn.Module, info: DistInfo, cfg) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(wrapped, forward): the model made ready to train under `cfg` (a TrainConfig), from outside it, and what the
    loop calls for a forward pass. Build the optimizer on `model` afterwards: FSDP replaces its parameters in place.

    - train.parallel = "ddp": DDP when there are several processes (every rank holds the whole model; gradients are
      averaged in the backward pass), else the model itself.
    - train.parallel = "fsdp": FSDP2 (`fully_shard`), one unit per transformer block plus a root unit for the rest
      (embeddings, final norm and the head, which share a tied weight so must share a unit); parameters, gradients
      and optimizer state are sharded across processes. In bf16 runs the all-gathered parameters are bf16 and the
      gradients are reduced in fp32. With one process there is nothing to shard and the model is used as is.
    - train.activation_checkpointing: each block's activations are recomputed in the backward pass.
    - train.compile: torch.compile of each block under FSDP (the units' collectives stay outside the graphs, as
      torchtitan does it), of the whole wrapped model under DDP.
    """
    blocks = getattr(model, "blocks", None)
    if (cfg.parallel == "fsdp" or cfg.activation_checkpointing) and not isinstance(blocks, torch.nn.ModuleList):
        raise ForesightError(f"train.parallel = 'fsdp' and train.activation_checkpointing need a model of "
                             f"transformer blocks; {type(model).__name__} has none")
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(blocks):  # the wrapper forwards attributes and strips its name from state dicts
            blocks[i] = checkpoint_wrapper(block)
    if cfg.parallel == "ddp":
        wrapped = DistributedDataParallel(model) if info.enabled else model
        return wrapped, (torch.compile(wrapped) if cfg.compile else wrapped)
    if cfg.compile:
        for block in blocks:
            block.compile()  # in place: parameter names stay as they are
    if info.enabled:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and next(model.parameters()).is_cuda)
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for block in blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    return model, model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 wraps this model (its gradient sync is then switched with set_requires_gradient_sync)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def no_sync(wrapped: torch.nn.Module):
    """A context in which backward passes accumulate gradients locally, without the all-reduce (DDP) or the
    reduce-scatter (FSDP): for every micro-batch of a step but the last."""
    if isinstance(wrapped, DistributedDataParallel):
        with wrapped.no_sync():
            yield
    elif is_sharded(wrapped):
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        yield


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
