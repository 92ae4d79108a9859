"""Data parallelism on ``torch.distributed``: each rank takes a slice of every meta-batch.

Launched by ``torchrun --nproc_per_node=N -m metagrad train PRESET``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, and ``World.from_env()`` joins the process
group (gloo on CPU, nccl on CUDA). Every rank draws the *whole* meta-batch of ``B`` tasks from the
same generator and keeps tasks ``r B / N .. (r + 1) B / N - 1`` (``World.shard``), so the union of
the ranks' tasks is exactly the one-process meta-batch and the task stream's state is the same on
every rank (a checkpoint of rank 0 resumes all of them). Each rank's meta-loss is the mean over its
``B / N`` tasks; the meta-gradient of the whole batch is the mean over ranks,

    grad F = 1/B sum_i grad L_i = 1/N sum_r ( N/B sum_{i in r} grad L_i ),

which ``World.average_gradients`` computes with one ``all_reduce`` over a flat buffer. Only rank 0
writes files. Multi-node runs use torchrun's usual rendezvous flags (``--nnodes``,
``--node_rank``, ``--rdzv_endpoint``); nothing here depends on the number of nodes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from .batch import TaskBatch
from .errors import ConfigError

__all__ = ["World"]


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` data-parallel processes (``World()``: a single process)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    @staticmethod
    def from_env(device: torch.device | None = None) -> "World":
        """Join the process group torchrun describes in the environment (a single process if
        ``WORLD_SIZE`` is unset or 1). gloo on CPU, nccl on CUDA."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World()
        if not dist.is_initialized():
            backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return World(dist.get_rank(), dist.get_world_size())

    def shard(self, batch: TaskBatch) -> TaskBatch:
        """This rank's equal share of ``batch`` (every rank holds the whole batch)."""
        if self.size == 1:
            return batch
        if batch.n_tasks % self.size:
            raise ConfigError(f"distributed: a meta-batch of {batch.n_tasks} tasks does not split evenly over "
                              f"{self.size} processes; make outer.meta_batch a multiple of {self.size}")
        n = batch.n_tasks // self.size
        return batch[self.rank * n:(self.rank + 1) * n]

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace every ``.grad`` by its mean over ranks (missing gradients count as zeros)."""
        if self.size == 1:
            return
        params = list(params)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over ranks (for logging the whole batch's loss)."""
        if self.size == 1:
            return value
        v = value.detach().clone()
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return v / self.size

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()
