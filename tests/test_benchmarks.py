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
