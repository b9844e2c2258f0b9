"""Data-parallel training through the one Trainer (torchrun, gloo on the CPU), sharding, determinism.

The 2-process tests start ``python -m torch.distributed.run`` as the user would, inside the suite
(one thread per process); they are marked slow but stay in the default suite.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import deepnn
from deepnn.cli import main as cli
from deepnn.data import TensorLoader
from deepnn.data.text import RandomWindowLoader, SequentialTextLoader
from deepnn.train import ClassificationTask, Config, Trainer, apply_overrides, distributed, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    threads = [] if "--resume" in args else ["--threads", "1"]  # a resumed run keeps its config (1 thread)
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}", "-m", "deepnn", "train", *args, "--no-progress", *threads]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def weights(path: Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return ckpt.ema if prefix == "ema." else ckpt.model


LENET = ["lenet", "--epochs", "1", "--set", "data.train_subset=512", "--set", "data.val_size=256",
         "--batch-size", "64", "--set", "train.ema_decay=0.9",
         "--set", "data.crop_padding=2", "--set", "data.flip=true", "--set", "data.erase_prob=0.5"]


def worker_pids(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the worker processes torchrun (process ``parent``) started: its children, with
    the rank read from the ``RANK`` variable torchrun gave them (Linux ``/proc``)."""
    ranks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after the (command name): state, ppid
            environ = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == parent else []
        except (OSError, ValueError, IndexError):  # ended meanwhile, or not ours to read
            continue
        for var in environ:
            if var.startswith(b"RANK="):
                ranks[int(var[5:])] = int(stat.parent.name)
    return ranks


# ---- sharding (fast) --------------------------------------------------------------------------
def test_tensor_loader_shards_partition_each_global_batch() -> None:
    x, y = torch.arange(40).float().unsqueeze(1), torch.arange(40)
    loader = TensorLoader(x, y, 8, shuffle=True, seed=3, drop_last=True)
    shards = [loader.shard(r, 4) for r in range(4)]
    assert len(shards[0]) == len(loader) == 5 and shards[0].batch_size == 8  # global batch, global count
    for epoch in (0, 1):
        for b, (_xb, yb) in enumerate(loader.batches(epoch)):
            parts = [list(s.batches(epoch, b))[0][1] for s in shards]
            assert all(len(p) == 2 for p in parts)
            assert torch.equal(torch.cat(parts), yb)  # rank order = the global batch's order
    with pytest.raises(deepnn.UserError, match="global batch and must divide evenly among the 3"):
        loader.shard(0, 3)


def test_text_loaders_split_streams_among_ranks() -> None:
    tokens = torch.arange(1000) % 37
    seq = SequentialTextLoader(tokens, 4, 10, seed=1)
    rnd = RandomWindowLoader(tokens, 4, 10, seed=1)
    for loader in (seq, rnd):
        halves = [loader.shard(r, 2) for r in range(2)]
        for (x, y, _carry), (x0, y0, _), (x1, y1, _) in zip(loader.batches(1), halves[0].batches(1),
                                                            halves[1].batches(1)):
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert len(halves[1]) == len(loader)


def test_ddp_with_one_process_is_the_plain_loop(tmp_path: Path) -> None:
    """train.ddp=always at world size 1: the same weights, bit for bit, and no divergence reported."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    cfg = apply_overrides(Config(), ["train.progress=false", "train.epochs=2", "optim.lr=0.01",
                                     "train.device=cpu", "train.ema_decay=0.9"])
    model = deepnn.create_model("lenet_modern")
    plain = Trainer(copy.deepcopy(model), ClassificationTask(10), TensorLoader(x, y, 32, shuffle=True),
                    TensorLoader(x[:64], y[:64], 64), cfg=cfg)
    plain.fit()
    cfg.train.ddp = "always"
    assert distributed.setup("cpu", "always") is not None
    try:
        ddp = Trainer(copy.deepcopy(model), ClassificationTask(10), TensorLoader(x, y, 32, shuffle=True),
                      TensorLoader(x[:64], y[:64], 64), cfg=cfg, run_dir=tmp_path)
        assert ddp.ddp_model is not None and ddp.world_size == 1
        ddp.fit()
    finally:
        distributed.shutdown()
    assert ddp.weight_divergence == 0.0
    for k, v in plain.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert [r["train_loss"] for r in ddp.history] == [r["train_loss"] for r in plain.history]
    assert load_checkpoint(tmp_path / "last.safetensors").meta["global_step"] == 16


def test_agreement_interval_follows_the_agreed_clock() -> None:
    """Agreement steps come from agreed values only: ~AGREE_SECONDS of training, 1..AGREE_MAX_STEPS steps."""
    top = distributed.AGREE_MAX_STEPS
    assert distributed.agree_interval(0.1, 10, "cpu") == 5  # 10 ms steps: every 5 steps (50 ms)
    assert distributed.agree_interval(0.001, 10, "cpu") == top  # very fast steps: capped
    assert distributed.agree_interval(2.0, 1, "cpu") == 1  # slow steps: every step
    assert distributed.agree_interval(0.0, 0, "cpu") == 1
    assert distributed.agree_interval(2.0, 1, "cuda") == top  # the clock does not see the GPU: fixed


def test_each_rank_draws_its_own_dropout_stream_per_step() -> None:
    """With several processes the default generator is seeded from (seed, step, rank): ranks differ, a
    step's draws are reproducible (exact resume), steps differ; with one process nothing is re-seeded."""
    cpu = torch.device("cpu")
    ranks = [distributed.Dist(r, 2, r, cpu, "gloo") for r in range(2)]

    def draws(d: distributed.Dist, step: int) -> torch.Tensor:
        distributed.seed_step(d, seed=0, step=step)
        return torch.nn.functional.dropout(torch.ones(64), 0.5)

    with torch.random.fork_rng(devices=[]):
        a, b = draws(ranks[0], 5), draws(ranks[1], 5)
        assert not torch.equal(a, b)  # different examples, different masks
        assert torch.equal(draws(ranks[0], 5), a) and not torch.equal(draws(ranks[0], 6), a)
        torch.manual_seed(1)
        state = torch.get_rng_state()
        distributed.seed_step(distributed.Dist(0, 1, 0, cpu, "gloo"), seed=0, step=5)
        assert torch.equal(torch.get_rng_state(), state)  # one process: the plain stream


# ---- determinism ------------------------------------------------------------------------------
@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.backends.cudnn.deterministic = before[1]


def test_deterministic_runs_are_bit_identical(tmp_path: Path, restore_determinism: None) -> None:
    """Two runs with train.deterministic (random crops and flips, EMA): the same bits, whatever ran before."""
    import random

    import numpy as np

    from deepnn.data import ImageData
    from deepnn.runs import build_training

    g = torch.Generator().manual_seed(0)
    data = ImageData(train=(torch.randn(512, 1, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)),
                     val=(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)),
                     test=(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)),
                     classes=[str(i) for i in range(10)], mean=0.0, std=1.0)
    runs = []
    for seed_before in (1234, 99):
        cfg = apply_overrides(Config(), ["model.name=lenet_modern", "train.progress=false", "train.epochs=1",
                                         "data.batch_size=64", "train.deterministic=true", "data.flip=true",
                                         "data.crop_padding=2", "train.ema_decay=0.9"])
        torch.manual_seed(seed_before)  # what ran before must not matter
        random.seed(seed_before)
        training = build_training(cfg, None, data=data)
        assert torch.are_deterministic_algorithms_enabled()
        assert (random.random(), float(np.random.rand())) == (random.Random(0).random(),
                                                              float(np.random.RandomState(0).rand()))
        training.trainer.fit()
        runs.append(training.trainer)
    for key in ("model", "ema"):
        a, b = (getattr(t, key) if key == "model" else t.ema.module for t in runs)
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), f"{key}.{k}"


# ---- two processes (torchrun, gloo) -------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path: Path) -> None:
    """The same global batch, crops, flips and erasures (augmentation drawn for the global batch): the
    same weights and EMA as one process, up to summation order."""
    r = subprocess.run(torchrun(*LENET, "--out", str(tmp_path / "ddp")), env=env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("test accuracy") == 1  # only rank 0 reports
    assert "max |w_rank - w_0| = 0 " in r.stderr  # both ranks hold identical weights (and EMA)
    run = tmp_path / "ddp"
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 2 and results["global_batch_size"] == 64 and results["steps"] == 8
    assert results["ddp_max_weight_diff"] == 0.0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # one record per epoch, not per rank
    assert not (run / "run.lock").exists()

    assert cli(["train", *LENET, "--no-progress", "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    assert single["world_size"] == 1 and single["ddp_max_weight_diff"] is None
    for prefix in ("model.", "ema."):  # the EMA agrees too
        a, b = weights(run / "last.safetensors", prefix), weights(tmp_path / "one" / "last.safetensors", prefix)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=f"{prefix}{k}")
    assert results["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=0.01)


@pytest.mark.slow
def test_sigterm_stops_every_rank_and_one_process_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["lenet", "--epochs", "2", "--set", "data.train_subset=4096", "--set", "data.val_size=256",
            "--batch-size", "64", "--set", "train.val_every_steps=16", "--out", str(run)]
    proc = subprocess.Popen(torchrun(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not (run / "last.safetensors").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)  # what a scheduler does: torchrun passes it on to every rank
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert err.count("interrupted; checkpoint saved") == 1, err[-3000:]  # rank 0 saved, once
    ckpt = load_checkpoint(run / "last.safetensors")  # intact: the digests check
    stopped = ckpt.meta["global_step"]
    assert 0 < stopped < 128 and ckpt.meta["config"]["data"]["batch_size"] == 64
    assert not (run / "results.json").exists()

    assert cli(["train", "lenet", "--resume", str(run), "--no-progress"]) == 0  # 2 processes → 1
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 1 and results["steps"] == 128 and results["epochs"] == 2
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 128


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds the workers through /proc (Linux)")
def test_killing_one_rank_stops_the_job_and_its_checkpoint_resumes(tmp_path: Path) -> None:
    """Kill one rank mid-epoch (SIGKILL: no handler runs): torchrun stops the job with an error instead of
    hanging, ``last`` is intact, and resuming it with 1 process and with 2 processes trains to the end."""
    run = tmp_path / "run"
    args = ["lenet_modern", "--epochs", "2", "--set", "data.train_subset=1024", "--set", "data.val_size=128",
            "--batch-size", "64", "--set", "train.val_every_steps=4", "--out", str(run)]  # 32 steps; batch norm
    proc = subprocess.Popen(torchrun(*args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: nothing outlives the test
    try:
        deadline = time.time() + 120
        while not (run / "last.safetensors").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before a rank could be killed"
        assert (run / "last.safetensors").exists(), "no checkpoint within 2 minutes"
        workers = worker_pids(proc.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[0], signal.SIGKILL)  # the rank that writes: it may die in the middle of a checkpoint
        _, err = proc.communicate(timeout=120)  # the other rank must not wait forever for the dead one
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of torchrun and its workers
        proc.wait()
    assert proc.returncode != 0, err[-3000:]
    ckpt = load_checkpoint(run / "last.safetensors")  # intact: the digests check
    stopped = ckpt.meta["global_step"]
    assert 0 < stopped < 32 and stopped % 4 == 0
    assert not (run / "results.json").exists()

    runs = {n: tmp_path / f"resume{n}" for n in (1, 2)}
    for folder in runs.values():
        shutil.copytree(run, folder)
    assert cli(["train", "lenet_modern", "--resume", str(runs[1]), "--no-progress"]) == 0  # 2 processes → 1
    r = subprocess.run(torchrun("lenet_modern", "--resume", str(runs[2])), env=env(), capture_output=True,
                       text=True, timeout=180)  # 2 → 2
    assert r.returncode == 0, r.stderr[-3000:]
    for n, folder in runs.items():
        results = json.loads((folder / "results.json").read_text())
        assert results["world_size"] == n and results["steps"] == 32 and results["epochs"] == 2
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == 32
    assert results["ddp_max_weight_diff"] == 0.0  # batch norm: rank 0's buffers reach every rank


@pytest.mark.slow
def test_two_process_language_model(tmp_path: Path) -> None:
    text = tmp_path / "hamlet.txt"
    text.write_text("".join(f"{w} the {v} of {n}.\n" for w in ("To be", "Or not", "Whether 'tis")
                            for v in ("slings", "arrows") for n in ("fortune", "troubles", "the sea")) * 12)
    run = tmp_path / "gru"
    r = subprocess.run(torchrun("char_gru", "--text", str(text), "--epochs", "2", "--batch-size", "8",
                                "--set", "model.args.hidden_size=32", "--set", "data.seq_len=32",
                                "--set", "train.precision=fp32", "--set", "train.val_every_minutes=null",
                                "--set", "train.val_every_steps=5", "--out", str(run)),
                       env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 2 and results["ddp_max_weight_diff"] == 0.0
    assert results["tokens_per_s"] == pytest.approx(results["steps"] * 8 * 32 / results["train_time_s"], rel=0.02)
    ckpt = load_checkpoint(run / "last.safetensors")
    states = [v for k, v in ckpt.task.items()]
    assert states and all(s.shape[-2] == 8 for s in states)  # the whole carried state: both ranks' 4 streams
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records][:2] == [5, 10] and records[-1]["val_loss"] < records[0]["val_loss"] + 0.5
