"""Data parallelism on ``torch.distributed``: each rank takes a slice of every meta-batch.

Launched by ``torchrun --nproc_per_node=N -m metagrad train PRESET``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, and ``World.from_env()`` joins the process
group (gloo on CPU, nccl on CUDA). Every rank draws the *whole* meta-batch of ``B`` tasks from the
same generator and keeps tasks ``r B / N .. (r + 1) B / N - 1`` (``World.shard``), so the union of
the ranks' tasks is exactly the one-process meta-batch and the task stream's state is the same on
every rank (a checkpoint of rank 0 resumes all of them). Each rank's meta-loss is the mean over its
``B / N`` tasks; the meta-gradient of the whole batch is the mean over ranks,

    grad F = 1/B sum_i grad L_i = 1/N sum_r ( N/B sum_{i in r} grad L_i ),

which ``World.average_gradients`` computes with one ``all_reduce`` over a flat buffer; the logged
loss and the explosion guard use its mean over ranks (``World.mean``), so every rank takes the same
decisions and keeps the same parameters. In float64 a run of N processes equals the one-process
run to rounding (summation order); 002's ``D_beta`` is not sharded (one step size for the whole
update). A loss that draws from torch's global RNG (MT-net's Gumbel noise) draws each rank's own
noise (``World.rank_rng``): equal to one process in distribution, not bitwise. Only rank 0
writes files; every rank validates and evaluates (the same numbers). Multi-node runs use torchrun's usual rendezvous flags (``--nnodes``,
``--node_rank``, ``--rdzv_endpoint``); nothing here depends on the number of nodes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

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
        self.check_meta_batch(batch.n_tasks)
        n = batch.n_tasks // self.size
        return batch[self.rank * n:(self.rank + 1) * n]

    def check_meta_batch(self, meta_batch: int) -> None:
        """A one-line ``ConfigError`` unless ``meta_batch`` tasks split evenly over the ranks."""
        if meta_batch % self.size:
            raise ConfigError(f"distributed: a meta-batch of {meta_batch} tasks does not split evenly over "
                              f"{self.size} processes; make outer.meta_batch a multiple of {self.size}")

    @contextmanager
    def rank_rng(self) -> Iterator[None]:
        """Inside, torch's global RNG is this rank's own stream (under data parallelism; a single
        process draws from the global RNG as it is).

        A loss that draws from the global RNG (MT-net's Gumbel noise) would otherwise draw the
        *same* noise on every rank for different tasks. The seed is one draw of the global RNG,
        which therefore advances identically on every rank (its state stays common, and the
        checkpoint's copy resumes every rank), plus the rank. Such a run is exact under resume for
        a given number of processes and equal *in distribution* to a one-process run, not
        bitwise: the one-process run draws the noise of all ``B`` tasks from one stream.
        """
        if self.size == 1:
            yield
            return
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed((seed * 1_000_003 + self.rank) % 2 ** 63)
            yield

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

    def max(self, values: list[float]) -> list[float]:
        """Each of ``values``' largest value over ranks, in one collective (``fit``'s stop reasons,
        so that every rank takes the same branch)."""
        if self.size == 1:
            return list(values)
        nccl = dist.get_backend() == "nccl"   # nccl reduces CUDA tensors only
        dev = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        v = torch.tensor(values, dtype=torch.float64, device=dev)
        dist.all_reduce(v, op=dist.ReduceOp.MAX)
        return v.tolist()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()
