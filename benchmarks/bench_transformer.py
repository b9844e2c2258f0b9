"""Training step of the translation Transformer (``transformer_mt``, the recipe's size) on the CPU: PyTorch's
fused attention kernel vs ours, and where dropout is drawn, side by side in one run.

One step = forward, label-smoothed cross-entropy, backward and an AdamW step, bf16 autocast, on a batch shaped
like the recipe's length buckets (160 pairs, 24 source and 26 target tokens, a quarter of the sources
padded). Configurations: ``attention`` sdpa (``F.scaled_dot_product_attention``) or scratch
(:func:`deepnn.layers.attention`), each with dropout 0.1 everywhere, 0.1 except inside the feed-forward
networks (``ff_dropout=0``, the recipe), and none. Each round times every configuration once, in an order
that rotates per round; the table gives the median seconds per step with the min–max over the rounds, and
the median per-round ratio to the first configuration.

    python benchmarks/bench_transformer.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from deepnn.layers import shift_right
from deepnn.models import create_model

CONFIGS = [(attn, dropout, ff) for attn in ("sdpa", "scratch")
           for dropout, ff in ((0.1, None), (0.1, 0.0), (0.0, None))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    B, S, T, V = 160, 24, 26, 4000
    src, tgt = torch.randint(4, V, (B, S), generator=g), torch.randint(4, V, (B, T), generator=g)
    src[: B // 4, S - 6:] = 0
    runs = {}
    for attn, dropout, ff in CONFIGS:
        torch.manual_seed(0)
        model = create_model("transformer_mt", vocab_size=V, attention=attn, dropout=dropout, ff_dropout=ff)
        runs[(attn, dropout, ff)] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))

    def step(model, opt) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(src, shift_right(tgt, 2))
            loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=0, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for model, opt in runs.values():  # warm-up
        step(model, opt)
    times: dict[tuple, list[float]] = {k: [] for k in runs}
    keys = list(runs)
    for r in range(args.rounds):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(*runs[k])
            times[k].append((time.perf_counter() - start) / args.steps)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"{args.rounds} rounds × {args.steps} steps, batch {B}×{S} → {B}×{T}, bf16 autocast")
    base = keys[0]
    print("| attention | dropout | inside feed-forward | s/step, median (min–max) | vs sdpa + 0.1 everywhere |")
    print("|---|---:|---:|---:|---:|")
    for k in keys:
        ratio = statistics.median(b / t for b, t in zip(times[base], times[k]))
        attn, dropout, ff = k
        print(f"| {attn} | {dropout} | {dropout if ff is None else ff} | {statistics.median(times[k]):.3f} "
              f"({min(times[k]):.3f}–{max(times[k]):.3f}) | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
