"""Issue 5's GPU measurements in one call, within a fixed time budget (a lent GPU is short-lived).

Phases, in priority order; each is logged under ``--out`` and the next starts even if one fails:

1. environment: torch, CUDA, the card; stops at once if deepnn cannot train on it;
2. ``benchmarks/bench_zoo.py``: examples/s and MFU of every recipe (one process, solo);
3. ``deepnn bench train resnet18 --compare``: fp32 against bf16 + channels_last;
4. the sprint recipe (``resnet18 --recipe sprint``), alone on the GPU so its time is clean;
5. the zoo's fast recipes over seeds, ``--parallel`` processes sharing the GPU, until the
   deadline (jobs not finished by then are killed and left out);
6. ``--compile`` throughput of ResNet-18, if time is left.

Every training run writes its usual run folder; :func:`pack` keeps the small files
(results.json, config.yaml, metrics.jsonl) and the logs in ``--out/gpu_runs.tgz``.

    python benchmarks/gpu_session.py --out /tmp/gpu --archive $OUT/gpu_runs.tgz --budget 550
    python benchmarks/gpu_session.py --out /tmp/smoke --smoke      # the whole flow in a minute on a CPU
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ZOO = ["alexnet", "nin", "vgg16_bn", "googlenet", "inception_bn"]  # after resnet18; then the small ones
SMALL = ["vgg11", "vgg11_bn", "lenet_modern", "highway"]  # launch-bound on a GPU; measured on the CPU too
SEEDS = (0, 1, 2)
SPRINT_SEEDS = (0, 1, 2)
SMOKE = ["--set", "data.train_subset=2048", "--epochs", "1", "--set", "data.eval_batch_size=500"]


class Session:
    def __init__(self, out: Path, budget: float, smoke: bool) -> None:
        self.out, self.smoke = out, smoke
        self.deadline = time.monotonic() + budget
        self.runs = out / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.logs = out / "logs"
        self.logs.mkdir(exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, cmd: list[str], limit: float) -> int | None:
        """Run ``cmd`` with its output in ``logs/<name>.log``; ``None`` if it ran out of time."""
        limit = min(limit, self.left())
        if limit < 5:
            print(f"[skip] {name}: no time left", flush=True)
            return None
        t0 = time.monotonic()
        with open(self.logs / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit).returncode
            except subprocess.TimeoutExpired:
                rc = None
        print(f"[{'done' if rc == 0 else 'FAIL' if rc is not None else 'TIMEOUT'}] {name} "
              f"({time.monotonic() - t0:.0f} s, {self.left():.0f} s left)", flush=True)
        tail = (self.logs / f"{name}.log").read_text().strip().splitlines()[-3:]
        print("    " + "\n    ".join(tail), flush=True)
        return rc

    def train_cmd(self, model: str, recipe: str, seed: int) -> tuple[str, list[str]]:
        name = f"{model}-{recipe}-s{seed}"
        cmd = [sys.executable, "-m", "deepnn", "train", model, "--recipe", recipe, "--seed", str(seed),
               "--out", str(self.runs / name), "--no-progress", *(SMOKE if self.smoke else [])]
        return name, cmd

    def pool(self, jobs: list[tuple[str, list[str]]], parallel: int, reserve: float) -> None:
        """Run ``jobs`` ``parallel`` at a time in order; none starts or survives past the deadline − reserve."""
        waiting, running = list(jobs), []
        end = self.deadline - reserve
        while waiting or running:
            while waiting and len(running) < parallel and time.monotonic() < end - 20:
                name, cmd = waiting.pop(0)
                log = open(self.logs / f"{name}.log", "w")
                running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log,
                                time.monotonic()))
            for item in list(running):
                name, proc, log, t0 = item
                if proc.poll() is not None or time.monotonic() > end:
                    killed = proc.poll() is None
                    if killed:
                        proc.kill()
                        proc.wait()
                    log.close()
                    running.remove(item)
                    last = (self.logs / f"{name}.log").read_text().strip().splitlines()[-2:]
                    state = "KILLED" if killed else "done" if proc.returncode == 0 else "FAIL"
                    print(f"[{state}] {name} ({time.monotonic() - t0:.0f} s, "
                          f"{self.left():.0f} s left) " + " / ".join(last)[:300], flush=True)
            if not running and waiting and time.monotonic() >= end - 20:
                print(f"[skip] {len(waiting)} jobs: out of time: " + ", ".join(n for n, _ in waiting), flush=True)
                waiting = []
            time.sleep(0.5)


def pack(out: Path, archive: Path) -> Path:
    """The small files of every run and all logs, as one archive (the GPU machine keeps nothing)."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((out / "runs").glob("*/*")):
            if path.name in ("results.json", "config.yaml", "metrics.jsonl"):
                tar.add(path, arcname=str(path.relative_to(out)))
        tar.add(out / "logs", arcname="logs")
    return archive


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--archive", type=Path, help="where pack() writes (default: OUT/gpu_runs.tgz)")
    p.add_argument("--budget", type=float, default=500, help="seconds for all phases")
    p.add_argument("--parallel", type=int, default=4, help="training processes sharing the GPU in phase 5")
    p.add_argument("--smoke", action="store_true", help="tiny runs on any device, to test this script")
    args = p.parse_args()
    s = Session(args.out, args.budget, args.smoke)
    archive = args.archive or args.out / "gpu_runs.tgz"
    py = sys.executable
    env_check = ("import torch, deepnn; print(torch.__version__, torch.version.cuda, torch.cuda.is_available()); "
                 "from deepnn.data import load_image_data; d = load_image_data(); print(d.train[0].shape); "
                 "import subprocess; print(subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True)"
                 ".stdout if torch.cuda.is_available() else 'no GPU')")
    if s.run("env", [py, "-c", env_check], 60) != 0:
        print((s.logs / "env.log").read_text())
        pack(args.out, archive)
        return 1
    quick = ["--steps", "2", "--warmup", "1"] if args.smoke else ["--steps", "30", "--warmup", "8"]
    s.run("bench_zoo", [py, "benchmarks/bench_zoo.py", *quick], 120)
    s.run("bench_resnet18_compare", [py, "-m", "deepnn", "bench", "train", "resnet18", "--compare",
                                     "--batch-size", "512", "--rounds", "2", *quick], 60)
    for seed in SPRINT_SEEDS:
        name, cmd = s.train_cmd("resnet18", "sprint", seed)
        s.run(name, cmd, 60)
    jobs = [s.train_cmd("resnet18", "fast", seed) for seed in SEEDS]  # the headline target first
    jobs += [s.train_cmd(model, "fast", seed) for seed in SEEDS for model in ZOO]
    jobs += [s.train_cmd(model, "fast", seed) for seed in SEEDS for model in SMALL]
    s.pool(jobs, args.parallel, reserve=65)
    s.run("bench_resnet18_compile", [py, "-m", "deepnn", "bench", "train", "resnet18", "--precision", "bf16",
                                     "--channels-last", "--batch-size", "512", "--compile", *quick], 90)
    print(f"packed {pack(args.out, archive)}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "4")
    sys.exit(main())
