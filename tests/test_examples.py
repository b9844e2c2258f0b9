"""The lecture as a course: every script in ``examples/`` runs and prints the slide's numbers.

Each ``examples/*.py`` runs as a subprocess on one thread (``--out`` into ``tmp_path`` for the scripts
that write a file); a new example is picked up by its file name. Where an example prints numbers that
``LECTURE.md`` lists, they must appear in its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))

# file name -> strings its output must contain (compared with all whitespace removed)
EXPECTED: dict[str, list[str]] = {
    "01_convolution_and_pooling.py": [
        "[[19,25],[37,43]]",  # C1
        "(28,28)", "(4,4)",  # C4
        "[[0,3,8,4],[9,19,25,10],[21,37,43,16],[6,7,8,0]]",  # C5
        "[[0,8],[6,8]]",  # C6
        "[[56,72],[104,120]]",  # C7
        "[[4,5],[7,8]]", "[[2,3],[5,6]]",  # C10 max and average pooling
        "rowofY[0,1,0,0]",  # C10 vertical edge
    ],
    "02_image_kernels.py": [
        "edge[[0,9,0],[9,-36,9],[0,9,0]]", "sharpen[[0,-3,0],[-3,21,-3],[0,-3,0]]",
        "random1[[-2,2,18],[-3,0,2],[-3,-3,-2]]", "random2[[9,6,0],[6,0,-6],[0,-6,-1]]",  # C3
        "learnedkernel:[[0.9997,-0.9988]]",  # C2
    ],
    "03_lenet.py": ["61,706parameters", "16×5×5", "validationaccuracy"],
    "04_modern_cnns.py": [
        "16×5×5×120=48,000", "512×7×7×4096=102,760,448",  # C14
        "50,844,008", "824×",  # C12 at the slide's geometry
        "163,696", "128,049,152", "442,624", "346,816,512", "1,229,056", "963,379,200",  # C16
    ],
    "05_nas.py": ["controller'smostlikelyarchitecture:5x5-83x3-321x1-16=thetarget"],
    "06_rnn_lstm_gru.py": ["1^1000=1", "1.01^1000=20959.2", "0.99^1000=4.31712e-05", "0.01^1000=0"],  # R4
    "07_char_lm.py": ["greedysamplefrom'h':'hello'", "x(32,64),y(32,64)", "sample"],  # R3, R1
    "08_attention_transformer.py": ["query0:1.0000.0000.0000.000"],  # T4's mask
    "09_export.py": ["ONNXRuntimevsPyTorch"],  # F1
    "10_translation.py": ["greedydecodingvsbeamsearch", "corpusBLEU", "teacher-forced:loss", "looksmostat"],
}
WRITES = {"02_image_kernels.py": "kernels.png", "07_char_lm.py": "run", "09_export.py": "lenet.onnx"}


def test_every_example_is_known() -> None:
    """A new example gets its expected strings here (an empty list is fine for one without slide numbers)."""
    assert SCRIPTS and set(SCRIPTS) == set(EXPECTED)


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name: str, tmp_path: Path) -> None:
    args = [sys.executable, str(EXAMPLES / name)]
    if name in WRITES:
        args += ["--out", str(tmp_path / WRITES[name])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    flat = re.sub(r"\s+", "", proc.stdout)
    for expected in EXPECTED.get(name, []):
        assert expected in flat, f"{name}: {expected!r} not in its output:\n{proc.stdout}"
    if name in WRITES:
        assert (tmp_path / WRITES[name]).exists()
