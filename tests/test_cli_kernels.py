"""``deepnn kernels``: the C3 grid on a user's image or a Fashion-MNIST image, C2 ``--learn``,
and one-line errors, run as a user would (a subprocess) where the exit path matters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepnn.cli import main

DATA = Path(os.environ.get("DEEPNN_DATA", "/work/shared/data"))


def deepnn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepnn", "kernels", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _rgb_png(path: Path) -> Path:
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :15, 0] = 255  # red left half
    pixels[5:15, 10:20, 1] = 200  # green square across the edge
    Image.fromarray(pixels).save(path)
    return path


def test_grid_of_user_image(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = deepnn(str(_rgb_png(tmp_path / "photo.png")), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "8 kernels on photo.png, 3 channel(s), 20×30" in result.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (900, 960)
        colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(colours, axis=0)) > 20  # images were drawn, not an empty figure


@pytest.mark.parametrize("name", ["grid.jpg", "grid.JPEG"])
def test_grid_as_jpeg(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    out = tmp_path / name
    assert main(["kernels", str(_rgb_png(tmp_path / "photo.png")), "-o", str(out)]) == 0
    assert f"wrote {out} (8 kernels on photo.png" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (900, 960)
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels[40:300, 20:290, 0] > 200).any() and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_grey_image_stays_one_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.tile(np.arange(0, 250, 10, dtype=np.uint8), (12, 1))).save(tmp_path / "grey.png")
    assert main(["kernels", str(tmp_path / "grey.png"), "-o", str(tmp_path / "g.png")]) == 0
    assert "1 channel(s), 12×25" in capsys.readouterr().out
    assert (tmp_path / "g.png").stat().st_size > 0


def test_large_image_is_scaled_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _rgb_png(tmp_path / "photo.png")
    args = ["kernels", str(tmp_path / "photo.png"), "--max-side", "15", "-o", str(tmp_path / "g.png")]
    assert main(args) == 0
    assert "3 channel(s), 10×15" in capsys.readouterr().out


@pytest.mark.skipif(not (DATA / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not available")
def test_fashion_mnist_sample_without_image(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPNN_DATA", str(DATA))
    assert main(["kernels", "--index", "3", "-o", str(tmp_path / "fm.png")]) == 0
    assert "Fashion-MNIST test #3 (Trouser), 1 channel(s), 28×28" in capsys.readouterr().out
    assert (tmp_path / "fm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learn_prints_losses_and_a_kernel_near_the_lecture_one() -> None:
    result = deepnn("--learn")
    assert result.returncode == 0, result.stderr
    losses = [float(v) for v in re.findall(r"^step +\d+ +loss ([\d.]+)$", result.stdout, re.M)]
    assert len(losses) == 20 and losses[-1] < 1e-3 < losses[0]
    match = re.search(r"learned kernel: \[\[(-?[\d.]+), (-?[\d.]+)\]\]", result.stdout)
    assert match, result.stdout
    assert float(match[1]) == pytest.approx(1, abs=0.01) and float(match[2]) == pytest.approx(-1, abs=0.01)


def test_missing_image_is_one_line_error(tmp_path: Path) -> None:
    result = deepnn(str(tmp_path / "nope.png"), "-o", str(tmp_path / "out.png"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("deepnn kernels: error: image ") and "nope.png" in result.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("args,message", [
    (["{tmp}/not_an_image.png"], "cannot read"),
    (["{tmp}/photo.png", "-o", "{tmp}/missing/dir/out.png"], "does not exist; create it first"),
    (["{tmp}/photo.png", "-o", "{tmp}/out.gif"], "give a path ending in .png or .jpg"),
    (["{tmp}/photo.png", "--max-side", "2"], "--max-side must be at least 3"),
    (["--learn", "{tmp}/photo.png"], "takes no IMAGE"),
    (["--learn", "--steps", "0"], "steps must be at least 1"),
])
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _rgb_png(tmp_path / "photo.png")
    (tmp_path / "not_an_image.png").write_text("hello")
    assert main(["kernels", *(a.format(tmp=tmp_path) for a in args)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""


def test_help_describes_both_modes() -> None:
    result = deepnn("--help")
    assert result.returncode == 0
    for words in ("C3", "C2", "--learn", "Fashion-MNIST", "-o OUTPUT"):
        assert words in result.stdout
