"""Data-parallel training (DDP) on the one training loop: the helpers the Trainer calls.

Launch any ``deepnn train`` command with ``torchrun`` and it trains on every process::

    torchrun --nproc_per_node=2 -m deepnn train lenet --threads 1      # 2 CPU processes (gloo)
    torchrun --nproc_per_node=8 -m deepnn train resnet18 --recipe fast  # 8 GPUs (nccl, cuda:LOCAL_RANK)

How it works (the design, in the order a step runs):

* :func:`setup` joins the process group when ``torchrun`` set ``WORLD_SIZE > 1`` (``RANK``,
  ``LOCAL_RANK``, ``MASTER_ADDR``): gloo on the CPU, nccl on CUDA with device ``cuda:LOCAL_RANK``.
  Without torchrun (or with ``WORLD_SIZE=1``) nothing changes: no process group, the same code path.
  ``train.ddp=always`` uses DDP even with one process (under torchrun, or a private one-process group):
  that measures DDP's own overhead.
* ``data.batch_size`` is the **global** batch: every rank computes the same permutation of
  ``(seed, epoch)`` and takes its ``1/world_size`` part of each global batch (``TensorLoader.shard``;
  the text loaders split their ``B`` streams or windows likewise). The step index is global, so a run
  may be resumed with a different number of processes (2 → 1, 1 → 4, ...) as long as the global batch
  divides evenly. The learning rate is **not** scaled: the global batch and ``optim.lr`` are what you set.
* The model is wrapped in ``DistributedDataParallel`` for forward/backward only (gradients averaged
  over ranks); ``trainer.model`` stays the plain module, so checkpoints, the weight average (EMA) and
  evaluation use plain state dicts. Weights are identical on every rank after each step, hence so is
  the EMA; at the end :func:`max_divergence` checks that (``results.json``: ``ddp_max_weight_diff``).
  :func:`wrap` sets two DDP options (see its docstring): no buffer broadcast before every forward
  (the trainer copies rank 0's buffers itself where they are read) and gradients that are views of
  DDP's all-reduce buckets (one copy fewer per step).
* Training statistics are summed over ranks (one ``all_reduce``) before the task summarizes them;
  every rank evaluates the whole validation split with its (identical) weights, so metrics, ``best``
  and hooks such as early stopping agree without communication (buffers such as batch-norm
  statistics are first copied from rank 0: :func:`broadcast_buffers`).
* Decisions agree: one small ``all_reduce(MAX)`` combines the interrupt flag (Ctrl-C / SIGTERM on any
  rank), hook stops and the training clock, and the trainer acts on those only at such an
  *agreement step*, so every rank stops, validates and plans a time budget at the same step; a
  planned budget is broadcast from rank 0. A NaN loss is seen on the reduced sums, so by every rank.
  Agreement steps are the same on every rank because they are computed from agreed values only:
  the end of an epoch, the planned last step, every ``train.val_every_steps``, and in between every
  :func:`agree_interval` steps, a number derived from the *agreed* clock of the previous agreements
  (about :data:`AGREE_SECONDS` of training, at most :data:`AGREE_MAX_STEPS` steps; on CUDA a fixed
  ``AGREE_MAX_STEPS``, as each agreement waits for the GPU). A rank whose flag is set between two
  agreements keeps training until the next one; so a SIGTERM or a hook's stop takes effect within
  about ``AGREE_SECONDS`` and the time budget is overrun by as much at most. With one process
  (``train.ddp=always`` at world size 1) there is nothing to agree on: no agreement, and the
  bookkeeping helpers below return without a collective.
* Random numbers. Augmentation (:mod:`deepnn.data.augment`) does not depend on the number of processes:
  every rank holds the same ``augment`` generator (seeded by ``train.seed``, restored from rank 0's
  checkpoint), draws the random numbers of the whole **global** batch, and uses the columns of its own
  examples (``shard=(rank, world_size)``), so example ``i`` of global batch ``b`` is cropped, flipped and erased the
  same way with 1, 2 or 8 processes (tested), and no two ranks share numbers for different examples.
  Dropout masks are drawn inside the model for the rank's own examples, so they cannot match a single
  process; with several processes each rank's default generators (CPU and its CUDA device) are
  re-seeded before every step from ``(train.seed, step, rank)`` (:func:`seed_step`): distinct streams
  per rank (without it every rank would draw the same masks for different examples), and a resume
  with the same number of processes draws what the uninterrupted run would have. One process keeps
  the plain stream (bit-identical to a run without DDP).
* Only rank 0 writes the run folder (checkpoints, metrics, plots, ``results.json``). A rank that dies
  (killed, out of memory) makes the others' next collective fail, or torchrun stops them; checkpoints
  are written atomically, so ``last`` is the last complete one, and resuming it works with any number
  of processes (tested by killing a rank mid-epoch).

Batch norm: with ``train.sync_bn`` (CUDA only) batch statistics are computed over the global batch
(``SyncBatchNorm``); without it each rank normalises with its own ``B / world_size`` examples, so a
model with batch norm does not train exactly as a single process would (models without it do, up to
floating-point summation order).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class Dist:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CURRENT: Dist | None = None


def env_rank() -> int:
    """The ``RANK`` torchrun gave this process (0 without torchrun): who prints and writes."""
    return int(os.environ.get("RANK", "0") or 0)


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(device_name: str = "auto", mode: str = "auto") -> Dist | None:
    """Join the process group torchrun describes (``WORLD_SIZE > 1``), or return ``None`` (one process).

    ``mode="always"`` (``train.ddp=always``) also uses DDP at world size 1: under torchrun, or in a
    private one-process group when started without it. Calling it again returns the same group.
    """
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    world = env_world_size()
    if world <= 1 and mode != "always":
        return None
    import torch.distributed as dist

    from .trainer import resolve_device

    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run with one process")
    launched = "RANK" in os.environ and "MASTER_ADDR" in os.environ
    if world > 1 and not launched:
        raise UserError(f"WORLD_SIZE={world} but RANK/MASTER_ADDR are not set; start data-parallel runs "
                        "with torchrun --nproc_per_node=N -m deepnn train ...")
    rank, local = (env_rank(), int(os.environ.get("LOCAL_RANK", "0") or 0)) if launched else (0, 0)
    device = resolve_device(device_name)
    if device.type == "cuda":
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"data-parallel training runs on cpu or cuda, not {device.type}; pass --device cpu")
    timeout = timedelta(minutes=30)
    if not dist.is_initialized():
        if launched:
            dist.init_process_group(backend, timeout=timeout)
        else:  # train.ddp=always without torchrun: a private group of one
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                    world_size=1, timeout=timeout)
    _CURRENT = Dist(dist.get_rank(), dist.get_world_size(), local, device, backend)
    return _CURRENT


def current() -> Dist | None:
    """The group :func:`setup` joined, or ``None`` (single process)."""
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (end of a run); a no-op without one."""
    global _CURRENT
    if _CURRENT is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def wrap(model: nn.Module, d: Dist, sync_bn: bool = False) -> tuple[nn.Module, nn.Module]:
    """``(module, ddp)``: the (sync-BN converted) module and its ``DistributedDataParallel`` wrapper.

    Two options differ from DDP's defaults; neither changes a result:

    * no buffer broadcast before every forward (``forward_sync_buffers=False``, on PyTorch before 2.13
      ``broadcast_buffers=False``): by default DDP copies rank 0's buffers (batch-norm running
      statistics) to every rank at each forward, one collective per step. In training mode batch norm
      normalises with the batch's own statistics, so the other ranks' running statistics are read by
      nothing in training; they are read by evaluation and checkpoints, before which the trainer
      copies rank 0's (:func:`broadcast_buffers`), and checkpoints come from rank 0 anyway. Rank 0's
      buffers are the same either way. (Buffers that never change, such as sinusoid tables, are equal
      everywhere from the start.)
    * ``gradient_as_bucket_view=True``: ``param.grad`` becomes a view of DDP's all-reduce bucket, so
      the averaged gradient is not copied back from the bucket (and needs no second copy in memory).

    Left at their defaults: ``static_graph`` (it promises the same autograd graph at every step, which
    not every model here guarantees, and it saves little without unused parameters), the bucket size,
    and ``batched_grad_copy`` (PyTorch 2.13+; no difference measured for the small models here).
    At world size 1 the gradient all-reduce stays (it is DDP's cost being measured there); skipping it
    with a no-op communication hook saved too little to tell from noise (``benchmarks/bench_ddp.py``).
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if d.device.type != "cuda":
            raise UserError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                            "set train.sync_bn=false on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [d.device.index] if d.device.type == "cuda" else None
    new_flag = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = {"forward_sync_buffers": False} if new_flag else {"broadcast_buffers": False}
    return model, DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True, **no_buffer_sync)


AGREE_SECONDS = 0.05  # CPU: agree about this often (seconds of training) ...
AGREE_MAX_STEPS = 10  # ... but at least every this many steps; on CUDA every this many steps


def agree_interval(seconds: float, steps: int, device_type: str) -> int:
    """Steps until the next agreement, from the *agreed* clock: ``seconds`` of training took ``steps``
    steps since the previous agreement (equal on every rank, as both are agreed values).

    On the CPU: as many steps as fit in :data:`AGREE_SECONDS` at that speed, between 1 and
    :data:`AGREE_MAX_STEPS` (a 10 ms step agrees every 5 steps, a 1 s step every step). On CUDA the
    clock without a device sync measures the queue, not the GPU, so a fixed :data:`AGREE_MAX_STEPS`.
    """
    if device_type != "cpu":
        return AGREE_MAX_STEPS
    if steps <= 0 or seconds <= 0:
        return 1
    return max(1, min(AGREE_MAX_STEPS, int(AGREE_SECONDS * steps / seconds)))


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for ``(seed, step, rank)`` (a hash: nearby triples give unrelated streams)."""
    digest = hashlib.blake2b(f"deepnn/{seed}/{step}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seed_step(d: Dist, seed: int, step: int) -> None:
    """With several processes: seed this rank's default generators (the CPU's and its CUDA device's,
    which dropout draws from) for training step ``step`` from ``(seed, step, rank)``; one process
    keeps its stream. Costs a few microseconds (``torch.manual_seed`` would seed every device, ~100 µs)."""
    if d.world_size == 1:
        return
    s = step_seed(seed, step, d.rank)
    torch.default_generator.manual_seed(s)
    if d.device.type == "cuda":
        torch.cuda.default_generators[d.device.index].manual_seed(s)


def _comm_device(d: Dist) -> torch.device:
    return d.device if d.backend == "nccl" else torch.device("cpu")


def all_reduce(t: torch.Tensor, d: Dist, op: str = "sum") -> torch.Tensor:
    """``t`` reduced over ranks (``"sum"`` or ``"max"``), returned on the CPU."""
    import torch.distributed as dist

    if d.world_size == 1:  # the sum or max over one rank: no collective
        return t.detach().cpu().clone()
    t = t.to(_comm_device(d)).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.cpu()


def broadcast_int(value: int, d: Dist) -> int:
    """Rank 0's ``value`` on every rank."""
    import torch.distributed as dist

    if d.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(d))
    dist.broadcast(t, 0)
    return int(t.item())


@torch.no_grad()
def broadcast_buffers(module: nn.Module, d: Dist) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every rank."""
    import torch.distributed as dist

    if d.world_size == 1:
        return
    for b in module.buffers():
        t = b.data.to(_comm_device(d))
        dist.broadcast(t, 0)
        b.data.copy_(t)


def all_gather(t: torch.Tensor, d: Dist, dim: int) -> torch.Tensor:
    """The ranks' ``t`` concatenated along ``dim`` (rank order), on ``t``'s device."""
    import torch.distributed as dist

    if d.world_size == 1:
        return t.detach().clone()
    src = t.detach().to(_comm_device(d)).contiguous()
    parts = [torch.empty_like(src) for _ in range(d.world_size)]
    dist.all_gather(parts, src)
    return torch.cat(parts, dim).to(t.device)


@torch.no_grad()
def max_divergence(modules: list[nn.Module], d: Dist) -> float:
    """max |w_rank − w_rank0| over every floating-point parameter and buffer of ``modules``, all ranks."""
    import torch.distributed as dist

    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    if not tensors or d.world_size == 1:
        return 0.0
    flat = torch.cat([t.detach().float().flatten() for t in tensors]).to(_comm_device(d))
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def split_carried(tensors: dict[str, torch.Tensor], d: Dist) -> dict[str, torch.Tensor]:
    """This rank's rows of a whole carried state (batch dimension ``ndim - 2``: ``(B, H)``, ``(L, B, H)``);
    ``{}`` (a fresh state) when the rows do not split evenly."""
    out = {}
    for k, t in tensors.items():
        if t.ndim < 2 or t.shape[t.ndim - 2] % d.world_size:
            return {}
        out[k] = t.chunk(d.world_size, t.ndim - 2)[d.rank].clone()
    return out


def gather_carried(tensors: dict[str, torch.Tensor], d: Dist) -> dict[str, torch.Tensor]:
    """The whole carried state from every rank's rows (inverse of :func:`split_carried`)."""
    if any(t.ndim < 2 for t in tensors.values()):
        return {}
    return {k: all_gather(t, d, t.ndim - 2) for k, t in sorted(tensors.items())}


def deterministic(seed: int, device: torch.device | str = "cpu") -> None:
    """``train.deterministic``: deterministic kernels only (an op without one raises), cuDNN without
    autotuning, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` on CUDA, and Python's and NumPy's generators seeded.

    Limits: on the CPU every op this library trains with is deterministic (two runs give the same bits,
    tested). On CUDA an op without a deterministic kernel raises a RuntimeError naming it; known ones
    for the zoo are the backward of ``adaptive_avg_pool2d`` (ResNet, GoogLeNet, Inception heads) and of
    ``F.interpolate`` (bilinear), plus ``max_pool3d`` backward; cuDNN also loses its fastest (autotuned)
    algorithms, so expect slower steps. Bit-equality holds for the same machine, PyTorch build,
    device and number of processes, not across them. The setting is process-wide and stays on.
    """
    import random

    import numpy as np

    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed % 2**32)


def describe(d: Dist | None) -> dict[str, Any]:
    return {"world_size": d.world_size if d is not None else 1,
            "backend": d.backend if d is not None else None}
