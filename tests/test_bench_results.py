"""`deepnn bench train` (throughput, FLOP/s, MFU) and `deepnn results` (runs grouped by recipe)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from test_cli import assert_user_error
from test_cli import deepnn as cli

import deepnn
from deepnn.analysis.results import command_template, group_results, results_markdown
from deepnn.analysis.summary import summarize_model
from deepnn.runs.bench import compare_markdown_table, compare_settings, matmul_peak, train_throughput


def test_matmul_peak_is_a_positive_rate() -> None:
    assert 1e6 < matmul_peak("fp32", "cpu", n=128, reps=2) < 1e14
    with pytest.raises(deepnn.UserError, match="unknown precision"):
        matmul_peak("fp8", "cpu")


def test_train_throughput_counts_three_forward_passes_per_example() -> None:
    r = train_throughput("lenet", batch_size=16, steps=3, warmup=1, device="cpu")
    assert r.steps == 3 and r.seconds > 0 and r.examples_per_s == pytest.approx(48 / r.seconds)
    assert r.forward_flops == summarize_model("lenet", (1, 28, 28), num_classes=10).flops
    assert r.train_flops_per_s == pytest.approx(3 * r.forward_flops * r.examples_per_s)


def test_compare_interleaves_settings_and_tabulates_ratios() -> None:
    runs = compare_settings("lenet", rounds=2, batch_size=8, steps=2, warmup=1, device="cpu")
    assert [[r.setting for r in rs] for rs in runs] == [["fp32"] * 2, ["bf16 + channels_last"] * 2]
    table = compare_markdown_table(runs, {"fp32": 1e11, "bf16": 2e11})
    ratio = statistics.median(r.examples_per_s for r in runs[1]) / statistics.median(r.examples_per_s for r in runs[0])
    assert table.count("\n") == 3 and "| 1.00× |" in table and f"| {ratio:.2f}× |" in table


def test_bench_cli(tmp_path: Path) -> None:
    r = cli("bench", "train", "lenet", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "examples/s" in r.stdout and "MFU" in r.stdout and "x3 per training example" in r.stdout
    assert_user_error(cli("bench", "train", "lenet", "--input", "1x28", "--steps", "1"), "bad --input")
    assert_user_error(cli("bench", "train", "lenett"), "unknown model")


def write_run(root: Path, name: str, seed: int, acc: float, epochs: int = 3, model: str = "lenet",
              config: bool = True, gpu: str | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cmd = f"deepnn train {model} --epochs {epochs} --seed {seed} --out runs/{name}"
    (run / "results.json").write_text(json.dumps({
        "model": model, "test_accuracy": acc, "test_loss": 0.3, "epochs": epochs, "train_time_s": 10.0 + seed,
        "examples_per_s": 1000.0, "params": 61706, "flops": 833040, "seed": seed, "precision": "fp32",
        "machine": {"processor": "x86_64", "cpu_threads": 2, **({"gpu": gpu} if gpu else {})}, "command": cmd}))
    if config:
        (run / "config.yaml").write_text(yaml.safe_dump(
            {"model": {"name": model}, "train": {"epochs": epochs, "seed": seed, "progress": False}}))
    return run


def test_results_group_seeds_of_one_recipe(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "a", 0, 0.90), write_run(tmp_path, "b", 1, 0.92), write_run(tmp_path, "c", 2, 0.85,
                                                                                              epochs=1)]
    rows = group_results(p / "results.json" for p in runs)
    assert [(r.seeds, r.scores) for r in rows] == [((0, 1), (0.90, 0.92)), ((2,), (0.85,))]
    assert rows[0].score_std == pytest.approx(statistics.stdev([0.90, 0.92]))
    assert rows[0].command == "deepnn train lenet --epochs 3 --seed {seed}"
    table = results_markdown(rows)
    assert "| lenet | 0, 1 | 91.00 ± 1.41 | 10.5 | 1000 | 61.7K | 0.000833 | fp32 | x86_64, 2 threads |" in table
    assert "| lenet | 2 | 85.00 | 12.0 |" in table


def test_results_keep_machines_apart(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "a", 0, 0.90), write_run(tmp_path, "b", 1, 0.92, gpu="NVIDIA H100 80GB HBM3")]
    rows = group_results(p / "results.json" for p in runs)
    assert [(r.seeds, r.machines) for r in rows] == [((1,), ("NVIDIA H100 80GB HBM3",)), ((0,), ("x86_64, 2 threads",))]


def test_results_without_config_group_by_command() -> None:
    assert command_template("deepnn train x --out=r/1 --set train.seed=4 --lr 0.1") == \
        "deepnn train x --lr 0.1 --seed {seed}"
    assert command_template("deepnn train x --resume runs/a") == "deepnn train x --resume runs/a"


def test_results_cli_writes_the_table_and_reports_no_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "a", 0, 0.9, config=False)
    write_run(tmp_path / "runs", "b", 1, 0.8, config=False)
    r = cli("results", "-o", "docs/results.md", cwd=tmp_path)  # default: runs/*/results.json
    assert r.returncode == 0, r.stderr
    written = (tmp_path / "docs" / "results.md").read_text()
    assert "| lenet | 0, 1 | 85.00 ± 7.07 |" in written and written.strip() in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(cli("results", cwd=empty), "no training results found", "deepnn train")
