"""The benchmark scripts run (tiny settings) and print their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_zoo_prints_one_row_per_recipe() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_zoo.py"), "--device", "cpu", "--steps", "1",
                        "--warmup", "1", "--recipes", "lenet", "vgg11_bn-fast"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| lenet") or line.startswith("| vgg11_bn")]
    assert len(rows) == 2 and "bf16 + channels_last" in rows[1] and "| 0.014 |" in rows[1]  # width_div 4 applied
    assert "matmul peak fp32" in r.stdout


def test_gpu_session_skips_the_runs_it_has(tmp_path: Path) -> None:
    """A later GPU session fills only the gaps: runs already in --have are not trained again."""
    have = tmp_path / "have"
    for variant in ("sprint", "sprint-all14", "sprint-all16"):
        for seed in (0, 1, 2):
            (have / f"resnet18-{variant}-s{seed}").mkdir(parents=True)
            (have / f"resnet18-{variant}-s{seed}" / "results.json").write_text("{}")
    script = [sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "--out", str(tmp_path / "out"), "--smoke"]
    r = subprocess.run([*script, "--phases", "sprint", "--have", str(have)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[have] resnet18-sprint-s0" in r.stdout and "resnet18-sprint-all16-s2" in r.stdout
    assert not any((tmp_path / "out" / "runs").iterdir())  # nothing trained
    assert (tmp_path / "out" / "gpu_runs.tgz").is_file()
    r = subprocess.run([*script, "--phases", "sprint,sprnt"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "unknown phase" in r.stderr
