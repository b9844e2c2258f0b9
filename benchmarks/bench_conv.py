"""Forward + backward time of our im2col ``deepnn.ops.conv2d`` vs ``torch.nn.functional.conv2d``
(issue 3; the target is scratch within 3× of PyTorch).

Layer shapes: LeNet's two convolutions at batch 128, and ResNet-18's stage 1 (conv2_x) and the
first block of stage 2 (conv3_x, with its stride-2 3×3 and 1×1 downsampling convolutions) at
batch 16 (He et al. 2015, Table 1). Both implementations run side by side: every repeat times
each once, back to back in alternating order, so load from other processes hits both alike;
the table shows the median times and the median of the per-repeat ratios. The two outputs and
gradients are checked to agree first.

    python benchmarks/bench_conv.py                 # 2 threads, 15 repeats, about a minute
    python benchmarks/bench_conv.py --threads 1 --repeats 21
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from deepnn.ops import conv2d

# name, input (B, c_i, H, W), weight (c_o, c_i, k, k), stride, padding (per side), bias
SHAPES = [
    ("LeNet conv1", (128, 1, 28, 28), (6, 1, 5, 5), 1, 2, True),
    ("LeNet conv2", (128, 6, 14, 14), (16, 6, 5, 5), 1, 0, True),
    ("ResNet-18 stage 1, 3×3", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, False),
    ("ResNet-18 stage 2, 3×3 /2", (16, 64, 56, 56), (128, 64, 3, 3), 2, 1, False),
    ("ResNet-18 stage 2, 1×1 /2 shortcut", (16, 64, 56, 56), (128, 64, 1, 1), 2, 0, False),
    ("ResNet-18 stage 2, 3×3", (16, 128, 28, 28), (128, 128, 3, 3), 1, 1, False),
]

Conv = Callable[..., torch.Tensor]


def forward_backward(conv: Conv, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                     stride: int, padding: int, upstream: torch.Tensor) -> float:
    """Seconds for one forward and backward pass (gradients of input, weight and bias)."""
    for t in (x, w, b):
        if t is not None:
            t.grad = None
    start = time.perf_counter()
    conv(x, w, b, stride, padding).backward(upstream)
    return time.perf_counter() - start


def check_agreement(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int, padding: int
) -> None:
    """Ours and PyTorch's give the same outputs and gradients (float32 tolerance)."""
    tensors = [t for t in (x, w, b) if t is not None]
    results = []
    for conv in (conv2d, F.conv2d):
        y = conv(x, w, b, stride, padding)
        results.append((y, *torch.autograd.grad(y.sum(), tensors)))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3)


def bench(repeats: int, warmup: int) -> list[tuple[str, str, float, float, float]]:
    """(name, shapes, torch median ms, scratch median ms, median scratch / torch ratio) per layer shape."""
    rows = []
    for name, x_shape, w_shape, stride, padding, use_bias in SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(x_shape, generator=gen, requires_grad=True)
        w = torch.randn(w_shape, generator=gen).mul_(w_shape[1] ** -0.5).requires_grad_()
        b = torch.randn(w_shape[0], generator=gen).requires_grad_() if use_bias else None
        check_agreement(x, w, b, stride, padding)
        upstream = torch.randn(F.conv2d(x, w, b, stride, padding).shape, generator=gen)
        times: dict[str, list[float]] = {"torch": [], "scratch": []}
        impls = {"torch": F.conv2d, "scratch": conv2d}
        for r in range(warmup + repeats):
            order = ("torch", "scratch") if r % 2 == 0 else ("scratch", "torch")
            for impl in order:
                seconds = forward_backward(impls[impl], x, w, b, stride, padding, upstream)
                if r >= warmup:
                    times[impl].append(seconds)
        shapes = f"{tuple(x_shape)} ⋆ {tuple(w_shape)}, s={stride}, p={padding}"
        t_torch, t_ours = (statistics.median(times[impl]) * 1e3 for impl in ("torch", "scratch"))
        ratio = statistics.median(s / t for s, t in zip(times["scratch"], times["torch"], strict=True))
        rows.append((name, shapes, t_torch, t_ours, ratio))
        print(f"  measured {name}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed repeats per implementation (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repeats first (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {datetime.date.today()}, torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} interleaved repeats, float32")
    rows = bench(args.repeats, args.warmup)
    print("\n| layer | input ⋆ weight | torch fwd+bwd (ms) | scratch fwd+bwd (ms) | scratch / torch |")
    print("|---|---|---:|---:|---:|")
    for name, shapes, t_torch, t_ours, ratio in rows:
        print(f"| {name} | {shapes} | {t_torch:.1f} | {t_ours:.1f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
