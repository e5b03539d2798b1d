"""Data parallelism on torch.distributed: the environment contract, and the few collectives trqat needs.

A rank learns who it is from the standard environment contract that torchrun, trqat's own launcher
and `trqat run --nproc-per-node` set: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Under
SLURM without them, SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID stand in for the first three.
Nothing here depends on torchrun being present.

Every helper is a no-op in a single process (or when no process group is initialised), so the same
code path serves one rank and many.
"""
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def batch_share(batch_size: int, world_size: int, micro_batches: int = 1) -> int:
    """Each rank's share of one step's global batch (data.batch_size): the one check that it divides
    into `world_size` ranks x `micro_batches` micro-batches (train.accumulate_steps). The controller
    checks the same at load for the ranks it starts (config/resolve.ts); ranks started elsewhere are
    checked here."""
    split = world_size * micro_batches
    if batch_size % split:
        raise ValueError(f"data.batch_size ({batch_size}) is the batch of one step over all ranks: it must be a multiple of "
                         f"{world_size} rank(s) x {micro_batches} micro-batch(es) (train.accumulate_steps)")
    return batch_size // world_size


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"environment variable {name}={value!r} must be an integer") from None
    return default


def ranks_from_env() -> Ranks:
    """This process's place in the job: TRQAT_RANK/RANK/SLURM_PROCID and the like; one rank by default."""
    world = _env_int("TRQAT_WORLD_SIZE", "WORLD_SIZE", "SLURM_NTASKS", default=1)
    rank = _env_int("TRQAT_RANK", "RANK", "SLURM_PROCID", default=0)
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=rank if world > 1 else 0)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1} (RANK/WORLD_SIZE)")
    return Ranks(rank, world, local)


def backend_for(device: torch.device, configured: str = "auto") -> str:
    if configured != "auto":
        return configured
    return "nccl" if device.type == "cuda" else "gloo"


def init(ranks: Ranks, device: torch.device, backend: str = "auto", timeout_s: float = 1800.0) -> None:
    """Joins the process group of `ranks` (env:// rendezvous on MASTER_ADDR:MASTER_PORT); one rank: nothing."""
    if ranks.world_size == 1 or dist.is_initialized():
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} must be set for {ranks.world_size} ranks: the address and a free port "
                         f"of rank 0's machine (torchrun sets them; under SLURM, export them in the batch script)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device, backend), init_method="env://", rank=ranks.rank,
                            world_size=ranks.world_size, timeout=timedelta(seconds=timeout_s))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all ranks (in place, and returned); itself in one process."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor


def total(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all ranks (in place, and returned)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) everywhere: every rank evaluates and saves the same model."""
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather(obj: Any) -> Optional[List[Any]]:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere); [obj] in one process."""
    if not active():
        return [obj]
    out: Optional[List[Any]] = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
