"""Many processes, one run: torchrun's environment, the process group, and who alone writes.

`torchrun --nproc_per_node N -m deepfake_training.cli train ...` (or `deepfake-train` under torchrun) sets RANK,
WORLD_SIZE and LOCAL_RANK; `init_distributed` joins the group (NCCL on GPUs, gloo on CPU) and pins the local GPU.
Without those variables everything here is a one-process no-op, so the default path never changes.
Rank 0 alone builds caches, checkpoints, validates, exports and logs (`is_main`); the others wait at `barrier`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_environment() -> DistributedContext:
    """The process's place in a torchrun job (rank 0 of 1 when not under torchrun)."""
    return DistributedContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(backend: str | None = None, timeout_minutes: float = 60.0) -> DistributedContext:
    """Join torchrun's process group once (NCCL with CUDA, else gloo) and pin this process's GPU."""
    context = context_from_environment()
    if not context.enabled or dist.is_initialized():
        return context
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(context.local_rank)
    timeout = timedelta(minutes=timeout_minutes)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0":
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        # After torchrun restarted the ranks (one died), the group's keys of the failed attempt are still in the
        # agent's store: joining under the default keys connects to the dead ranks' addresses (gloo: "connection
        # refused"). Each attempt joins under its own prefix instead.
        store = dist.PrefixStore(f"attempt-{attempt}/", _rendezvous_store(context, timeout))
        dist.init_process_group(
            backend=backend, store=store, rank=context.rank, world_size=context.world_size, timeout=timeout
        )
    log.info("rank %d of %d joined (%s, attempt %s)", context.rank, context.world_size, backend, attempt)
    return context


def _rendezvous_store(context: DistributedContext, timeout: timedelta) -> dist.Store:
    """The TCP store torchrun's environment names, hosted as `init_process_group` would host it: by the agent
    (TORCHELASTIC_USE_AGENT_STORE) or else by rank 0."""
    hosted_by_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    return dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        context.world_size,
        is_master=not hosted_by_agent and context.is_main,
        timeout=timeout,
    )


def current() -> DistributedContext:
    """This process's context: the initialised group's, else one process."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistributedContext()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (so all ranks stop at the same step)."""
    if not current().enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class RankBatches(Sampler[list]):
    """This rank's contiguous share of each global batch of another batch sampler.

    Every rank walks the same global batches (same seed) and takes rows [rank*k, (rank+1)*k), k = batch/world:
    together the ranks see exactly the global batch one process would, and contiguous slices keep real/fake
    pairs (adjacent rows) on one rank.
    """

    def __init__(self, batches: Sampler[list], batch_size: int, rank: int, world_size: int, group: int = 1) -> None:
        if batch_size % world_size or (batch_size // world_size) % group:
            raise ValueError(
                f"batch_size {batch_size} must split into {world_size} equal per-process batches, each a multiple "
                f"of {group} (real/fake pairs); choose a batch size divisible by {world_size * group}"
            )
        self.batches, self.rank, self.share = batches, rank, batch_size // world_size

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list]:
        for batch in self.batches:
            yield batch[self.rank * self.share : (self.rank + 1) * self.share]
