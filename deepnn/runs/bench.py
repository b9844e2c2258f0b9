"""Training throughput and model-FLOPs utilisation (MFU) of a registered model on synthetic data.

:func:`train_throughput` times the real training step, the :class:`~deepnn.train.Trainer`'s
(learning-rate update, autocast, forward, loss, backward, optimizer), built by
:func:`~deepnn.runs.build_training` as ``deepnn train`` builds it, on random data that lives on the
device (images, or character ids for a language model), after a few warm-up steps (kernel selection,
allocator, autocast caches). Throughput counts the task's unit: examples/s, or tokens/s.

FLOPs follow one convention throughout:

* the **forward** FLOPs per example are FlopCounterMode's count from
  :func:`~deepnn.analysis.summary.summarize_model` (1 multiply-add = 2 FLOPs; normalisation,
  activations and pooling count 0), the figure ``results.json`` and ``docs/zoo.md`` report;
* a **training** example costs **3 ×** the forward FLOPs: the backward pass computes the
  gradients of the activations and of the weights, each about as costly as the forward pass
  (the "6N per token" rule of Kaplan et al. 2020);
* **MFU** (Chowdhery et al. 2022, PaLM, appendix B) is achieved training FLOP/s divided by the
  peak, measured here rather than taken from a datasheet: the best of a few large square
  matrix multiplies (:func:`matmul_peak`) in the run's precision on the same device.

On CUDA, PyTorch runs float32 convolutions as TF32 by default (``torch.backends.cudnn.allow_tf32``)
while float32 matmuls stay full precision; :func:`matmul_peak` therefore measures the fp32 peak with
TF32 matmuls when the convolutions use TF32 (a full-fp32 peak gave an "MFU" of 131 % on an H100).

    >>> r = train_throughput("lenet", steps=3, warmup=1, batch_size=16, device="cpu")  # doctest: +SKIP
    >>> r.examples_per_s > 0
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..analysis.summary import summarize_model
from ..data import ImageData
from ..data.text import CharVocab, TextData
from ..errors import UserError
from ..train.config import Config
from ..train.trainer import PRECISIONS, Trainer, resolve_device, synchronize
from .build import build_training, task_kind

__all__ = ["PRECISIONS", "COMPARE", "StepBench", "matmul_peak", "train_throughput", "compare_settings",
           "compare_markdown_table", "median_rate"]

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (activations and weights), see the module docstring
POOL_BYTES = 256 * 2**20  # synthetic images kept on the device at most
# the two settings of `deepnn bench train --compare` (issue 5: bf16 + channels_last >= 1.5x fp32)
COMPARE = (("fp32", False), ("bf16", True))


def matmul_peak(precision: str = "fp32", device: str | torch.device = "auto", n: int | None = None,
                reps: int = 5) -> float:
    """FLOP/s of the fastest of ``reps`` ``(n, n) @ (n, n)`` products (2·n³ FLOPs each) in ``precision``.

    ``n`` defaults to 2048 on a CPU and 8192 on a GPU (a 2048³ product is too short to fill a
    data-centre GPU: launch latency would halve the "peak"). On CUDA, fp32 is measured the way the
    convolutions run it: as TF32 on the tensor cores when ``torch.backends.cudnn.allow_tf32`` is on
    (PyTorch's default), so that an fp32 conv net's MFU compares like with like.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
    dev = resolve_device(device) if isinstance(device, str) else device
    n = n or (8192 if dev.type == "cuda" else 2048)
    g = torch.Generator(device=dev).manual_seed(0)
    a, b = (torch.randn(n, n, device=dev, generator=g).to(PRECISIONS[precision]) for _ in range(2))
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32 or (dev.type == "cuda" and torch.backends.cudnn.allow_tf32)
    try:
        a @ b  # warm-up: library initialisation and kernel choice
        best = float("inf")
        for _ in range(reps):
            synchronize(dev)
            t0 = time.perf_counter()
            a @ b
            synchronize(dev)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    return 2 * n**3 / best


@dataclass(frozen=True)
class StepBench:
    """One timed run: ``steps`` training steps of ``batch_size`` examples took ``seconds``."""

    model: str
    input_shape: tuple[int, ...]  # (C, H, W), or (T,) for a language model
    batch_size: int
    steps: int
    precision: str
    channels_last: bool
    device: str
    seconds: float
    forward_flops: int  # per example, FlopCounterMode (1 multiply-add = 2 FLOPs)
    compiled: bool = False  # torch.compile

    @property
    def examples_per_s(self) -> float:
        return self.batch_size * self.steps / self.seconds

    @property
    def tokens_per_s(self) -> float:
        """Language models: characters per second (examples/s × sequence length)."""
        return self.examples_per_s * self.input_shape[-1]

    @property
    def train_flops_per_s(self) -> float:
        """Achieved model FLOP/s: 3 × forward FLOPs per example × examples/s."""
        return TRAIN_FLOPS_PER_FORWARD * self.forward_flops * self.examples_per_s

    @property
    def setting(self) -> str:
        layout = " + channels_last" if self.channels_last else ""
        return self.precision + layout + (" + compile" if self.compiled else "")


class _StepTimer:
    """Hook: the time from the end of step ``warmup`` to the end of the last step (device synchronised)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.marks: list[float] = []

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step in (self.warmup, trainer.total_steps):
            synchronize(trainer.device)
            self.marks.append(time.perf_counter())


def _synthetic(model: str, input_shape: Sequence[int], batch_size: int, total: int, num_classes: int,
               device: torch.device, seed: int) -> tuple[ImageData | TextData, int]:
    """Random data of the model's task on ``device``, a pool of at most ``POOL_BYTES``; returns it and the
    number of batches in the pool."""
    g = torch.Generator(device=device).manual_seed(seed)
    if task_kind(model).task == "language_model":
        (seq_len,) = input_shape
        pool = max(1, min(total, POOL_BYTES // (batch_size * seq_len * 8)))
        tokens = torch.randint(0, num_classes, (pool * batch_size * seq_len + 1,), device=device, generator=g)
        vocab = CharVocab([chr(0x100 + i) for i in range(num_classes)])
        return TextData(vocab, tokens, tokens[:0], tokens, "synthetic"), pool
    c, h, w = input_shape
    pool = max(1, min(total, POOL_BYTES // (batch_size * c * h * w * 4)))  # batches of float32 images
    x = torch.randn(pool * batch_size, c, h, w, device=device, generator=g)
    y = torch.randint(0, num_classes, (pool * batch_size,), device=device, generator=g)
    empty = (x[:0], y[:0])
    return ImageData((x, y), empty, empty, tuple(map(str, range(num_classes))), 0.0, 1.0), pool


def train_throughput(model: str, input_shape: Sequence[int] = (1, 28, 28), *, batch_size: int = 128,
                     steps: int = 50, warmup: int = 5, precision: str = "fp32", channels_last: bool = False,
                     device: str = "auto", compile: bool = False, num_classes: int = 10, seed: int = 0,
                     **model_args: object) -> StepBench:
    """Time ``steps`` training steps of ``model`` (after ``warmup`` untimed ones) on random data.

    The model is built for ``input_shape`` (C, H, W) — for a language model ``(T,)``, the sequence
    length, with ``num_classes`` as the vocabulary size — with ``model_args`` (e.g. ``width_div=4``) and
    trained with the default optimizer (AdamW) as ``deepnn train`` would, in ``precision``
    (bf16 = autocast), optionally channels-last and ``torch.compile``-d (compilation happens in
    the warm-up steps, which are not timed).
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
    if steps < 1 or warmup < 1 or batch_size < 1:
        raise UserError(f"steps, warm-up steps and batch size must be at least 1, got {steps}, {warmup}, "
                        f"{batch_size}")
    language = task_kind(model).task == "language_model"  # checks the name
    if language and len(input_shape) != 1:
        raise UserError(f"{model} is a language model: its input is a sequence length (T,), not {tuple(input_shape)}")
    forward_flops = 0 if language else summarize_model(model, tuple(input_shape), num_classes=num_classes,
                                                        **model_args).flops
    cfg = Config()
    cfg.model.name, cfg.model.args = model, dict(model_args)
    cfg.data.batch_size = batch_size
    cfg.train.seed, cfg.train.progress = seed, False
    cfg.train.precision, cfg.train.channels_last, cfg.train.device = precision, channels_last, device
    cfg.train.compile = compile
    total = warmup + steps
    data, pool = _synthetic(model, input_shape, batch_size, total, num_classes, resolve_device(device), seed)
    if language:
        cfg.data.seq_len, cfg.data.batching = input_shape[0], "random"
    cfg.train.epochs = -(-total // pool)
    timer = _StepTimer(warmup)
    trainer = build_training(cfg, data=data, hooks=[timer]).trainer
    trainer.planned_steps = total
    trainer.fit()
    seconds = timer.marks[1] - timer.marks[0]
    return StepBench(model, tuple(input_shape), batch_size, steps, precision, channels_last, str(trainer.device),
                     seconds, forward_flops, compile)


def compare_settings(model: str, input_shape: Sequence[int] = (1, 28, 28), *, rounds: int = 3,
                     settings: Sequence[tuple[str, bool]] = COMPARE, **kwargs: object) -> list[list[StepBench]]:
    """Run :func:`train_throughput` for each ``(precision, channels_last)`` setting, interleaved
    (round 1: A, B; round 2: A, B; ...) so that machine noise hits all settings alike.
    Returns one list of ``rounds`` results per setting."""
    if rounds < 1:
        raise UserError(f"rounds must be at least 1, got {rounds}")
    runs: list[list[StepBench]] = [[] for _ in settings]
    for _ in range(rounds):
        for i, (precision, channels_last) in enumerate(settings):
            runs[i].append(train_throughput(model, input_shape, precision=precision, channels_last=channels_last,
                                            **kwargs))
    return runs


def median_rate(runs: Sequence[StepBench]) -> float:
    """Median examples/s of repeated runs of one setting."""
    return statistics.median(r.examples_per_s for r in runs)


def compare_markdown_table(runs: Sequence[Sequence[StepBench]], peaks: dict[str, float]) -> str:
    """Median examples/s per setting, achieved FLOP/s, MFU against ``peaks[precision]``, and the
    ratio of each setting's median to the first one's."""
    base = median_rate(runs[0])
    lines = ["| setting | examples/s (median) | min–max | achieved GFLOP/s | matmul peak GFLOP/s | MFU | vs first |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for rs in runs:
        eps = [r.examples_per_s for r in rs]
        med = median_rate(rs)
        achieved = TRAIN_FLOPS_PER_FORWARD * rs[0].forward_flops * med
        peak = peaks[rs[0].precision]
        lines.append(f"| {rs[0].setting} | {med:.0f} | {min(eps):.0f}–{max(eps):.0f} | {achieved / 1e9:.1f} | "
                     f"{peak / 1e9:.1f} | {100 * achieved / peak:.1f} % | {med / base:.2f}× |")
    return "\n".join(lines)
