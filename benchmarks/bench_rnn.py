"""Training throughput of the 2-layer character LSTM: our from-scratch LSTM (``impl="scratch"``) vs
PyTorch's fused kernels (``impl="fused"``), side by side in one run (target: scratch ≥ 0.5× fused).

One training step = forward, cross-entropy, backward and an Adam step of ``char_lstm`` (vocabulary 84,
one-hot inputs by default, ``--embedding N`` for an embedding) on a batch of 64 sequences of 128
characters. Each round times every configuration once, back to back, alternating the order, so load
from other processes hits both alike; the table shows median tokens/s with the min–max spread over the
rounds and the median of the per-round scratch / fused ratios. Precision fp32, and bf16 autocast.

    python benchmarks/bench_rnn.py                     # 2 threads, hidden 256 and 512, fp32 and bf16
    python benchmarks/bench_rnn.py --threads 1 --rounds 7 --hidden 256
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from deepnn.models import create_model

VOCAB = 84


def make(impl: str, hidden: int, embedding: int | None, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("char_lstm", vocab_size=VOCAB, hidden_size=hidden, num_layers=2, dropout=0.0,
                         embedding_dim=embedding, impl=impl)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def train_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, precision: str) -> float:
    """Seconds for one forward + backward + optimizer step."""
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
    start = time.perf_counter()
    with autocast:
        logits, _ = model(x)
    loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--embedding", type=int, default=None, help="embedding size (default: one-hot input)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = "one-hot" if args.embedding is None else f"embedding {args.embedding}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.machine()}, "
          f"char_lstm 2 layers, vocab {VOCAB}, {inputs} input, batch {args.batch}, seq {args.seq}, "
          f"{args.rounds} rounds (+{args.warmup} warm-up)")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (args.batch, args.seq), generator=gen)
    y = torch.randint(0, VOCAB, (args.batch, args.seq), generator=gen)
    tokens = args.batch * args.seq
    print("\n| hidden | precision | fused tok/s (min–max) | scratch tok/s (min–max) | scratch / fused |")
    print("|---:|---|---:|---:|---:|")
    for hidden in args.hidden:
        for precision in args.precision:
            setups = {impl: make(impl, hidden, args.embedding) for impl in ("fused", "scratch")}
            times: dict[str, list[float]] = {"fused": [], "scratch": []}
            for r in range(args.warmup + args.rounds):
                order = ("fused", "scratch") if r % 2 == 0 else ("scratch", "fused")
                for impl in order:
                    t = train_step(*setups[impl], x, y, precision)
                    if r >= args.warmup:
                        times[impl].append(t)
            rate = {k: [tokens / t for t in v] for k, v in times.items()}
            ratio = statistics.median(s / f for s, f in zip(rate["scratch"], rate["fused"], strict=True))
            cells = [f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
                     for v in (rate["fused"], rate["scratch"])]
            print(f"| {hidden} | {precision} | {cells[0]} | {cells[1]} | {ratio:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
