"""Training throughput and MFU of every packaged recipe, in one process (issue 5: "every model has
a model-FLOPs-utilisation figure").

For each ``recipes/*.yaml`` the recipe's model, model arguments, batch size, precision and
memory format are timed with :func:`deepnn.runs.bench.train_throughput` (synthetic data on
the device, warm-up steps untimed, its AdamW step standing in for the recipe's optimizer: the
update is a few element-wise passes over the weights either way); MFU is against this device's
matmul peak measured once per precision at the start.

    python benchmarks/bench_zoo.py [--device cuda] [--steps 30] [--recipes resnet18-fast lenet]
"""

from __future__ import annotations

import argparse

import torch

from deepnn.runs.bench import PRECISIONS, TRAIN_FLOPS_PER_FORWARD, matmul_peak, train_throughput
from deepnn.train.config import RECIPES_DIR, Config, load_yaml, merge_into
from deepnn.train.trainer import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=30, help="timed steps per recipe")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (slow to start)")
    p.add_argument("--recipes", nargs="+", help="recipe names (file stems), default: all")
    args = p.parse_args()
    device = resolve_device(args.device)
    names = args.recipes or sorted(f.stem for f in RECIPES_DIR.glob("*.yaml"))
    peaks = {prec: matmul_peak(prec, device) for prec in PRECISIONS}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type}, " \
        f"{torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}; matmul peak " +
          ", ".join(f"{prec} {peak / 1e12:.1f} TFLOP/s" for prec, peak in peaks.items()), flush=True)
    print("\n| recipe | model | batch | setting | examples/s | fwd GFLOPs/example | achieved TFLOP/s | MFU |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for name in names:
        cfg = Config()
        merge_into(cfg, load_yaml(RECIPES_DIR / f"{name}.yaml"), name)
        t = cfg.train
        r = train_throughput(cfg.model.name, batch_size=cfg.data.batch_size, steps=args.steps, warmup=args.warmup,
                             precision=t.precision, channels_last=t.channels_last, device=str(device),
                             compile=args.compile, **cfg.model.args)
        mfu = r.train_flops_per_s / peaks[t.precision]
        print(f"| {name} | {cfg.model.name} | {cfg.data.batch_size} | {r.setting} | {r.examples_per_s:.0f} | "
              f"{r.forward_flops / 1e9:.3f} | {r.train_flops_per_s / 1e12:.2f} | {100 * mfu:.1f} % |", flush=True)
    print(f"\nachieved = {TRAIN_FLOPS_PER_FORWARD} x forward FLOPs x examples/s; MFU = achieved / matmul peak "
          "of the recipe's precision")


if __name__ == "__main__":
    main()
