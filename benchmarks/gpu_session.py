"""Issue 5's GPU measurements in one call, within a fixed time budget (a lent GPU is short-lived).

The environment check comes first (it stops the script at once if deepnn cannot train on the
card); then the phases named by ``--phases``, in the order given (default: the order below), each
logged under ``--out``, the next starting even if one fails:

- ``bench``: ``benchmarks/bench_zoo.py``, examples/s and MFU of every recipe (one process, solo);
- ``compare``: ``deepnn bench train resnet18 --compare``, fp32 against bf16 + channels_last;
- ``sprint``: the time-to-94 % candidates (:data:`SPRINTS`: the sprint recipe, and it on all 60,000
  training images for more epochs), one at a time so that each has the GPU alone;
- ``zoo``: the zoo's fast recipes over seeds, ``--parallel`` processes sharing the GPU, until the
  deadline (jobs not finished by then are killed and left out);
- ``compile``: ``--compile`` throughput of ResNet-18.

``--have DIR`` skips the training runs whose folder (``<model>-<variant>-s<seed>``) in DIR already
holds a results.json, so a later session only fills the gaps of the published results
(``results/h100``). Every training run writes its usual run folder; :func:`pack` keeps the small
files (results.json, config.yaml, metrics.jsonl) and the logs in one archive.

    python benchmarks/gpu_session.py --out /tmp/gpu --archive $OUT/gpu_runs.tgz --budget 550 --have results/h100
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
# variant name -> `deepnn train resnet18 --recipe sprint` flags. Validation accuracy passed 94 % but test
# accuracy did not (93.50 %) in the first session: these add the 5,000 held-out images and epochs.
SPRINTS = {"sprint": [], "sprint-all14": ["--set", "data.val_size=0", "--epochs", "14"],
           "sprint-all16": ["--set", "data.val_size=0", "--epochs", "16"]}
PHASES = ("bench", "compare", "sprint", "zoo", "compile")
SMOKE = ["--set", "data.train_subset=2048", "--epochs", "1", "--set", "data.eval_batch_size=500"]


class Session:
    def __init__(self, out: Path, budget: float, smoke: bool, have: Path | None = None) -> None:
        self.out, self.smoke, self.have = out, smoke, have
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

    def train_cmd(self, model: str, recipe: str, seed: int, variant: str | None = None,
                  flags: tuple[str, ...] | list[str] = ()) -> tuple[str, list[str]]:
        name = f"{model}-{variant or recipe}-s{seed}"
        cmd = [sys.executable, "-m", "deepnn", "train", model, "--recipe", recipe, "--seed", str(seed), *flags,
               "--out", str(self.runs / name), "--no-progress", *(SMOKE if self.smoke else [])]
        return name, cmd

    def todo(self, jobs: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
        """``jobs`` less those whose results are already in ``--have``."""
        if self.have is None:
            return jobs
        done = [name for name, _ in jobs if (self.have / name / "results.json").is_file()]
        if done:
            print(f"[have] {', '.join(done)}", flush=True)
        return [(name, cmd) for name, cmd in jobs if name not in done]

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
    p.add_argument("--parallel", type=int, default=4, help="training processes sharing the GPU in the zoo phase")
    p.add_argument("--smoke", action="store_true", help="tiny runs on any device, to test this script")
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma-separated, run in the order given, of {', '.join(PHASES)} (default: all)")
    p.add_argument("--have", type=Path, help="skip training runs whose results are already in this folder")
    args = p.parse_args()
    phases = args.phases.split(",")
    if not set(phases) <= set(PHASES):
        p.error(f"unknown phase in {args.phases!r}; choose from {', '.join(PHASES)}")
    s = Session(args.out, args.budget, args.smoke, args.have)
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
    bench_resnet18 = [py, "-m", "deepnn", "bench", "train", "resnet18", "--batch-size", "512", *quick]
    zoo = [s.train_cmd("resnet18", "fast", seed) for seed in SEEDS]  # the headline target first
    zoo += [s.train_cmd(model, "fast", seed) for seed in SEEDS for model in ZOO]
    zoo += [s.train_cmd(model, "fast", seed) for seed in SEEDS for model in SMALL]
    sprints = [s.train_cmd("resnet18", "sprint", seed, variant, flags)
               for variant, flags in SPRINTS.items() for seed in SEEDS]
    for i, phase in enumerate(phases):
        if phase == "bench":
            s.run("bench_zoo", [py, "benchmarks/bench_zoo.py", *quick], 120)
        elif phase == "compare":
            s.run("bench_resnet18_compare", [*bench_resnet18, "--compare", "--rounds", "2"], 60)
        elif phase == "sprint":
            for name, cmd in s.todo(sprints):
                s.run(name, cmd, 60)
        elif phase == "zoo":
            s.pool(s.todo(zoo), args.parallel, reserve=65 if "compile" in phases[i:] else 5)
        else:
            s.run("bench_resnet18_compile", [*bench_resnet18, "--precision", "bf16", "--channels-last", "--compile"],
                  90)
    print(f"packed {pack(args.out, archive)}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "4")
    sys.exit(main())
