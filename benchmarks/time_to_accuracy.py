"""Time to accuracy: train models with their default recipe over several seeds; test accuracy and
training time (mean ± std). Issue 2's targets on 2 CPU cores: lenet >= 88 %, lenet_modern >= 91 %,
each in <= 60 s of training.

    python benchmarks/time_to_accuracy.py [--models lenet lenet_modern] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from deepnn.runs import train_run
from deepnn.train.config import Config, apply_overrides, load_yaml, merge_into, recipe_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["lenet", "lenet_modern"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            accs, times = [], []
            for seed in args.seeds:
                cfg = Config()
                merge_into(cfg, load_yaml(recipe_path(model)), model)
                apply_overrides(cfg, [f"train.seed={seed}", "train.progress=false"])
                r = train_run(cfg, Path(tmp) / f"{model}-{seed}", command=f"deepnn train {model} --seed {seed}")
                accs.append(r["test_accuracy"])
                times.append(r["train_time_s"])
                print(f"{model} seed {seed}: test accuracy {r['test_accuracy']:.4f} in {r['train_time_s']:.1f} s "
                      f"({r['epochs']} epochs, {r['examples_per_s']:.0f} examples/s)", flush=True)
            rows.append((model, accs, times))
    print(f"\n| model | test accuracy (mean ± std, {len(args.seeds)} seeds) | training time (s) |")
    print("|---|---|---|")
    for model, accs, times in rows:
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        tsd = statistics.stdev(times) if len(times) > 1 else 0.0
        print(f"| {model} | {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} % | "
              f"{statistics.mean(times):.1f} ± {tsd:.1f} |")


if __name__ == "__main__":
    main()
