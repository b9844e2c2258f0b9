"""``deepnn summary`` and ``deepnn chart`` as a user runs them: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def deepnn(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepnn", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_summary_lenet_and_compare() -> None:
    r = deepnn("summary", "lenet", "--compare", "lenet_modern")
    assert r.returncode == 0, r.stderr
    assert "| Dense1 | 48,120 | 48,000 |" in r.stdout
    assert "| **total** | 61,706 | 61,932 |" in r.stdout


def test_summary_inception_block() -> None:
    r = deepnn("summary", "inception-block", "--in", "192x28x28", "--out", "256")
    assert r.returncode == 0, r.stderr
    assert "| Inception | 256×28×28 | 164K | 128M | 163,696 | 128,049,152 |" in r.stdout
    assert "| 5×5 conv | 256×28×28 | 1.23M | 963M | 1,229,056 | 963,379,200 |" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("summary", "lenet", "--input", "1x28"), "bad --input '1x28'"),
        (("summary", "lenett"), "unknown model 'lenett'; did you mean lenet"),
        (("chart",), "train a model first"),
    ],
)
def test_errors_are_one_line_exit_2(args: tuple[str, ...], message: str, tmp_path) -> None:
    r = deepnn(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_in_process_errors(capsys) -> None:
    """The same one-line contract through ``deepnn.cli.main`` (no interpreter start-up)."""
    from deepnn.cli import main

    assert main(["summary", "lenet", "--out", "256"]) == 2
    assert "--out is for inception-block only" in capsys.readouterr().err
    assert main(["summary", "inception-block", "--out", "100"]) == 2
    assert "positive multiple of 8" in capsys.readouterr().err
    assert main(["summary", "lenet", "--input", "1x28x32"]) == 2
    assert "square" in capsys.readouterr().err


def test_chart_writes_png(tmp_path) -> None:
    for i, (model, acc) in enumerate([("lenet", 0.85), ("alexnet", 0.91)]):
        run = tmp_path / "runs" / f"r{i}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(
            json.dumps(
                {
                    "model": model,
                    "test_accuracy": acc,
                    "params": 61706 * (i * 100 + 1),
                    "flops": 833040 * (i * 500 + 1),
                }
            )
        )
    r = deepnn("chart", "-o", "zoo.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 models from 2 results files" in r.stdout
    assert (tmp_path / "zoo.png").read_bytes()[:4] == b"\x89PNG"
