"""C20 at scale: the nas_child space (Zoph & Le 2017), anchor-point skip connections, and the crash-safe,
resumable, parallel search with random search and a report (deepnn/nas/runner.py, report.py)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import deepnn as dn
from deepnn.cli import main as cli_main
from deepnn.errors import UserError
from deepnn.models.nas_child import format_arch, parse_arch
from deepnn.nas import ChildSpace, Controller, SearchSettings, proxy_config, read_trials, run_search
from deepnn.nas.runner import STATE, SearchState

TINY_SPACE = {"num_layers": 2, "heights": (1, 3), "widths": (3,), "filters": (4, 8), "strides": (1, 2)}
VOLATILE = ("time_s", "wall_s", "worker")  # what may differ between two runs of the same search


def tiny_child(subset: int = 128) -> dn.train.Config:
    cfg = proxy_config()
    cfg.data.train_subset, cfg.data.val_size, cfg.data.batch_size = subset, 128, 64
    return cfg


def tiny_settings(**kw) -> SearchSettings:
    return SearchSettings(**{"trials": 6, "archs_per_update": 3, "space": dict(TINY_SPACE), **kw})


def content(records: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in records), key=lambda r: r["trial"])


# --------------------------------------------------------------------------- the space


def test_arch_strings_round_trip_and_build_on_both_input_shapes() -> None:
    space = ChildSpace(num_layers=4, filters=(4, 8))
    g = torch.Generator().manual_seed(0)
    archs = {space.to_string(space.random(g)) for _ in range(12)}
    # every skip pattern of 4 layers: layer 3 may read layer 1, layer 4 layers 1 and 2
    for s3, s4 in itertools.product([(), (1,)], [(), (1,), (2,), (1, 2)]):
        skip = lambda s: f"[{','.join(map(str, s))}]" if s else ""  # noqa: E731
        archs.add(f"3x3-4 1x5-8/2 3x1-4{skip(s3)} 5x5-8/2{skip(s4)}")
    for arch in archs:
        assert format_arch(parse_arch(arch)) == arch
        assert space.to_string(space.from_string(arch)) == arch
        for c, size in ((1, 28), (3, 32)):
            net = dn.create_model("nas_child", arch=arch, in_channels=c, input_size=size, num_classes=10)
            assert net(torch.randn(2, c, size, size)).shape == (2, 10), arch


@pytest.mark.parametrize("arch, fragment", [
    ("", "empty"),
    ("3x3", "not of the form"),
    ("4x3-8", "must be odd"),
    ("3x3-0", "number of filters"),
    ("3x3-8/9", "stride"),
    ("3x3-8 3x3-8[1]", "layer 2 always reads layer 1"),
    ("3x3-8 3x3-8 3x3-8[2]", "from layers 1..1"),
    ("3x3-8 3x3-8 3x3-8 3x3-8[2,1]", "increasing order"),
])
def test_invalid_arch_strings_are_one_line_errors(arch: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment) as err:
        dn.create_model("nas_child", arch=arch)
    assert "\n" not in str(err.value)


def test_train_nas_child_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["train", "nas_child", "--set", "model.args.arch=3x3-8 3x5-8/2 1x1-8[1]", "--epochs", "1",
                     "--set", "data.train_subset=128", "--set", "data.val_size=128", "--batch-size", "64",
                     "--threads", "1", "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model_args"]["arch"] == "3x3-8 3x5-8/2 1x1-8[1]" and results["flops"] > 0


# --------------------------------------------------------------------------- the controller


def test_anchor_points_give_the_skip_bits_their_probability() -> None:
    space = ChildSpace(num_layers=4)
    torch.manual_seed(0)
    controller = Controller(space, hidden_size=16)
    tokens, log_prob, entropy = controller.sample(torch.Generator().manual_seed(3))
    assert len(tokens) == space.num_decisions == 4 * 4 + 0 + 0 + 1 + 2
    torch.testing.assert_close(controller.score(tokens)[0], log_prob)
    # flipping one skip bit changes log p by log(1 - P) - log P of that bit
    flipped = list(tokens)
    flipped[-1] = 1 - flipped[-1]
    assert not torch.isclose(controller.score(flipped)[0], log_prob)
    log_prob.backward()
    assert controller.v.weight.grad is not None and controller.w_prev.weight.grad.abs().sum() > 0
    assert entropy > 0


def test_reinforce_learns_to_use_skip_connections() -> None:
    """Toy reward: the fraction of skip bits set; a few batch updates make skips more likely."""
    from deepnn.nas.runner import reinforce_batch

    settings = tiny_settings(space={"num_layers": 4, "heights": (3,), "widths": (3,), "filters": (8,),
                                    "strides": (1,)}, archs_per_update=8, controller_lr=0.05)
    state = SearchState.fresh(settings)
    space = settings.child_space()

    def skips(tokens: list[int]) -> float:
        return sum(len(layer.skips) for layer in space.layers(tokens)) / 3

    means = []
    for _ in range(30):
        batch = [state.controller.sample(state.generator) for _ in range(8)]
        rewards = [skips(t) for t, _, _ in batch]
        means.append(sum(rewards) / 8)
        reinforce_batch(state, settings, rewards, [lp for _, lp, _ in batch], [h for _, _, h in batch])
    assert means[0] < 0.6 and sum(means[-5:]) / 5 > 0.9
    assert space.layers(state.controller.greedy())[-1].skips == (1, 2)


# --------------------------------------------------------------------------- the search


def test_search_record_cache_failures_and_folder_checks(tmp_path: Path) -> None:
    # 8 one-layer architectures, 10 trials: repeats come from the cache; 8 filters exceed 1,000 parameters
    out = tmp_path / "s"
    settings = tiny_settings(trials=10, strategy="random", max_params=1000, space={**TINY_SPACE, "num_layers": 1})
    records = run_search(out, settings, tiny_child())
    assert [r["trial"] for r in records] == list(range(10)) == sorted(r["trial"] for r in read_trials(out))
    for r in records:
        assert set(r) >= {"arch", "reward", "params", "flops", "time_s", "wall_s", "worker", "seed", "failure",
                          "cached"}
    cached = [r for r in records if r["cached"]]
    assert cached and all(r["worker"] == "cache" for r in cached)
    first = {r["arch"]: r for r in records if not r["cached"]}
    assert all(r["reward"] == first[r["arch"]]["reward"] for r in cached)
    failed = [r for r in records if r["failure"]]
    assert failed and all(r["reward"] == 0 and "too many parameters" in r["failure"] for r in failed)
    assert all(0.1 < r["reward"] <= 1 for r in records if not r["failure"])
    with pytest.raises(UserError, match="not empty; pass --resume"):
        run_search(out, tiny_settings(), tiny_child())
    with pytest.raises(UserError, match="holds no search"):
        run_search(tmp_path / "new", tiny_settings(), resume=True)


def test_max_flops_rejects_costlier_children_untrained(tmp_path: Path) -> None:
    # the one-layer space: 3x3-4 costs fewer FLOPs than 3x3-8 and than 1x3-8 (counted by summarize_model)
    flops = {a: dn.analysis.summarize_model("nas_child", (1, 28, 28), arch=a).flops for a in ("1x3-4", "3x3-8")}
    limit = flops["1x3-4"]
    settings = tiny_settings(trials=8, strategy="random", max_flops=limit, space={**TINY_SPACE, "num_layers": 1})
    records = run_search(tmp_path / "s", settings, tiny_child())
    over = [r for r in records if r["flops"] > limit]
    under = [r for r in records if r["flops"] <= limit]
    assert over and under
    assert all(r["reward"] == 0 and r["failure"].startswith("too many FLOPs") and r["val_accuracy"] is None
               for r in over if not r["cached"])
    assert all(r["failure"] is None and r["reward"] > 0.1 for r in under)
    assert json.loads((tmp_path / "s" / "settings.json").read_text())["search"]["max_flops"] == limit
    with pytest.raises(UserError, match="max-flops must be at least 1"):
        tiny_settings(max_flops=0).check()


@pytest.mark.parametrize("strategy", ["rl", "random"])
def test_redraw_makes_every_trial_a_trained_child_within_the_limits(tmp_path: Path, strategy: str) -> None:
    # the one-layer space: the 8-filter children have more than 1,000 parameters; with --over-budget redraw
    # they are drawn again instead of becoming trials, and the same search draws the same again
    settings = tiny_settings(trials=6, strategy=strategy, max_params=1000, over_budget="redraw",
                             space={**TINY_SPACE, "num_layers": 1})
    records = run_search(tmp_path / "a", settings, tiny_child())
    assert len(records) == 6 and sum(r["redrawn"] for r in records) > 0
    assert all(r["failure"] is None and r["params"] <= 1000 and r["val_accuracy"] is not None for r in records)
    assert all(parse_arch(r["arch"])[0].filters == 4 for r in records)
    assert content(run_search(tmp_path / "b", settings, tiny_child())) == content(records)
    fail = run_search(tmp_path / "c", tiny_settings(trials=6, strategy=strategy, max_params=1000,
                                                    space={**TINY_SPACE, "num_layers": 1}), tiny_child())
    assert any(r["failure"] for r in fail) and all(r["redrawn"] == 0 for r in fail)  # the default: fail


def test_redraw_stops_a_search_whose_limits_nothing_fits(tmp_path: Path) -> None:
    settings = tiny_settings(strategy="random", max_params=10, over_budget="redraw",
                             space={**TINY_SPACE, "num_layers": 1})
    with pytest.raises(UserError, match="no architecture in 10,000 draws fits max_params 10 .*raise the limits"):
        run_search(tmp_path / "s", settings, tiny_child())
    with pytest.raises(UserError, match="--over-budget must be one of fail, redraw"):
        tiny_settings(over_budget="skip").check()


def test_parallel_workers_write_the_serial_records(tmp_path: Path) -> None:
    serial = run_search(tmp_path / "serial", tiny_settings(), tiny_child())
    parallel = run_search(tmp_path / "parallel", tiny_settings(workers=2), tiny_child())
    assert content(serial) == content(parallel)
    assert {r["worker"] for r in parallel} - {"cache"} != {r["worker"] for r in serial} - {"cache"}


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / STATE))


def test_sigkill_mid_trial_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "deepnn", "nas", "search", "--out", str(out), "--trials", "8",
           "--archs-per-update", "3", "--layers", "2", "--filters", "4,8", "--set", "data.train_subset=512",
           "--set", "data.val_size=128", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while len(read_trials(out)) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # after trial 4 ended: trial 5 is training, update 2 not yet saved
    proc.wait()
    before = read_trials(out)
    assert 4 <= len(before) < 8, proc.stderr.read().decode()[-2000:]
    saved = _state(out)
    meta = json.loads((out / "settings.json").read_text())
    assert meta["search"]["trials"] == 8

    # the controller restored from disk equals the saved one, tensor for tensor
    settings = SearchSettings(**meta["search"])
    restored = SearchState.load(out, settings)
    for k, v in restored.tensors().items():
        assert torch.equal(v, saved[k]), k
    assert restored.next_trial == 3 * restored.update and restored.next_trial <= len(before)

    r = subprocess.run([sys.executable, "-m", "deepnn", "nas", "search", "--out", str(out), "--resume", "--quiet"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    after = read_trials(out)
    assert sorted(rec["trial"] for rec in after) == list(range(8))  # none lost, none repeated
    assert after[: len(before)] == before  # what was on disk stays as it was
    # and the same content as a search never interrupted
    reference = run_search(tmp_path / "reference", SearchSettings(**meta["search"]),
                           dn.train.Config.from_dict(meta["child"]))
    assert content(after) == content(reference)
    final, ref_state = _state(out), _state(tmp_path / "reference")
    assert final.keys() == ref_state.keys()
    assert all(torch.allclose(final[k].float(), ref_state[k].float()) for k in final if k != "generator")
    assert torch.equal(final["generator"], ref_state["generator"])


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_killed_search_leaves_no_worker_processes(tmp_path: Path) -> None:
    # children that train for many seconds: a worker left alone would go on training after the kill
    cmd = [sys.executable, "-m", "deepnn", "nas", "search", "--out", str(tmp_path / "s"), "--trials", "4",
           "--workers", "2", "--layers", "2", "--filters", "4,8", "--set", "data.train_subset=4096",
           "--set", "train.epochs=20", "--set", "data.val_size=128", "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = [p for p in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) >= 2, "the search never started its two workers"
        time.sleep(3)  # the workers have imported torch and are training
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5  # they notice within a second
        while any(Path(f"/proc/{p}").exists() for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in workers if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert not left, f"worker processes {left} outlived the killed search"
    finally:
        proc.kill()
        for p in workers:  # a failed test leaves nothing running
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def test_cli_search_report_and_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--layers", "2", "--filters", "4,8", "--archs-per-update", "2", "--set", "data.train_subset=128",
            "--set", "data.val_size=128"]
    budget = ["--max-flops", "272400"]  # about half of these children cost more
    for strategy, over in (("rl", "fail"), ("random", "redraw")):
        code = cli_main(["nas", "search", "--trials", "4", "--strategy", strategy, "--out",
                         str(tmp_path / strategy), *tiny, *budget, "--over-budget", over])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert out.out.startswith("trial 1/4  ") and "deepnn train nas_child --set model.args.arch=" in out.out
    code = cli_main(["nas", "report", str(tmp_path / "rl"), str(tmp_path / "random"), "-o", str(tmp_path / "n.png")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"
    assert "| rl | 1 |" in out.out and "| random | 1 |" in out.out and "| rank | val acc |" in out.out
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in out.out.splitlines()]
    rows = {c[0]: dict(zip(cells[0], c)) for c in cells if len(c) == 10}  # the per-search table, by folder
    assert int(rows["rl"]["failed"]) > 0 and rows["rl"]["redrawn"] == "0"  # over --max-flops: reward 0
    assert rows["random"]["failed"] == "0" and int(rows["random"]["redrawn"]) > 0  # drawn again instead
    for args, fragment in [(["--out", str(tmp_path / "rl"), *tiny], "not empty"),
                           (["--out", str(tmp_path / "rl"), "--resume", "--seed", "3"], "drop --seed"),
                           (["--out", str(tmp_path / "rl"), "--resume", "--over-budget", "redraw"],
                            "drop --over-budget"),
                           (["--out", str(tmp_path / "x"), "--set", "model.args.arch=3x3-8"],
                            "chooses model.args.arch"),
                           (["--out", str(tmp_path / "x"), "--set", "optim.lr=-1"], "optim.lr")]:
        code = cli_main(["nas", "search", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("deepnn nas: error:") and fragment in err[0], err
