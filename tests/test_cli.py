"""The deepnn CLI as a user runs it: subprocesses, happy paths and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepnn.cli import COMMANDS


def deepnn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepnn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real training run shared by the eval/predict/resume tests."""
    out = tmp_path_factory.mktemp("runs") / "lenet-tiny"
    r = deepnn("train", "lenet_modern", "--epochs", "1", "--set", "data.train_subset=2048",
               "--batch-size", "64", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    return out


def test_train_writes_the_run_folder(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "curves.png", "last.safetensors", "best.safetensors",
            "results.json"} <= names
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == "lenet_modern" and 0.5 < results["test_accuracy"] <= 1
    assert results["params"] == 61932 and "deepnn train" in results["command"]
    assert results["flops"] == 833_040  # forward FLOPs per example (FlopCounterMode), see docs/zoo.md
    assert results["train_time_s"] > 0 and results["warmup_time_s"] == 0.0  # warm-up before the clock: CUDA only
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_export_onnx(run_dir: Path, tmp_path: Path) -> None:
    r = deepnn("export", str(run_dir), "-o", str(tmp_path / "model.onnx"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model.onnx").stat().st_size > 100_000 and "largest difference" in r.stdout
    assert r.stderr == ""  # the exporter's notices about torchvision and deprecations are silenced
    assert_user_error(deepnn("export", str(tmp_path / "nothing")), "does not exist")


def test_eval(run_dir: Path) -> None:
    r = deepnn("eval", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "Ankle b" in r.stdout and "(10000 examples)" in r.stdout


def test_predict_any_size_image(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    img = np.full((90, 60, 3), 255, np.uint8)  # a dark rectangle on white, RGB, not 28×28
    img[20:70, 15:45] = 30
    Image.fromarray(img).save(tmp_path / "thing.png")
    Image.fromarray(img[..., 0]).save(tmp_path / "thing.jpg")
    r = deepnn("predict", str(run_dir), str(tmp_path / "thing.png"), str(tmp_path / "thing.jpg"), "--top", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.count(",") == 1 for line in lines)
    probs = [float(tok) for tok in lines[0].split(":")[1].replace(",", " ").split() if tok[0].isdigit()]
    assert len(probs) == 2 and 0 <= probs[1] <= probs[0] <= 1


def test_resume_of_a_finished_run_reports_again(run_dir: Path, tmp_path: Path) -> None:
    r = deepnn("train", "lenet_modern", "--resume", str(run_dir), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout


def test_models_lists_with_parameter_counts() -> None:
    r = deepnn("models", "lenet*")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split()[:2] == ["lenet", "0.06M"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_has_help(command: str) -> None:
    r = deepnn(command, "--help")
    assert r.returncode == 0 and "usage: deepnn " + command in r.stdout


def test_config_file_and_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: lenet}\ntrain: {epochs: 1}\ndata: {train_subset: 512}\n")
    out = tmp_path / "run"
    r = deepnn("train", "lenet", "--config", str(cfg), "--set", "optim.lr=0.01", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    saved = (out / "config.yaml").read_text()
    assert "lr: 0.01" in saved and "train_subset: 512" in saved


@pytest.mark.parametrize(
    "args, fragments",
    [(["train", "lenett"], ["unknown model 'lenett'", "did you mean lenet"]),
     (["train", "lenet", "--set", "optim.lrr=1"], ["unknown config key optim.lrr"]),
     (["train", "lenet", "--set", "train.epochs=two"], ["train.epochs", "must be an integer"]),
     (["train", "lenet", "--recipe", "nope"], ["no recipe 'nope'"]),
     (["eval", "/no/such/run"], ["does not exist"]),
     (["predict", "/no/such/run", "x.png"], ["does not exist"])],
)
def test_user_errors_are_one_line(args: list[str], fragments: list[str]) -> None:
    assert_user_error(deepnn(*args), *fragments)


def test_predict_unreadable_image(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    assert_user_error(deepnn("predict", str(run_dir), str(tmp_path / "notes.png")), "cannot read")
    assert_user_error(deepnn("predict", str(run_dir), str(tmp_path / "missing.png")), "does not exist")


def test_existing_run_folder_is_not_overwritten(run_dir: Path) -> None:
    assert_user_error(deepnn("train", "lenet_modern", "--out", str(run_dir)), "already holds a run", "--resume")


def test_resume_rejects_other_model_and_new_settings(run_dir: Path) -> None:
    assert_user_error(deepnn("train", "lenet", "--resume", str(run_dir)), "is a run of 'lenet_modern'")
    assert_user_error(deepnn("train", "lenet_modern", "--resume", str(run_dir), "--lr", "0.1"), "keeps its own config")


def test_corrupt_checkpoint_in_run_folder(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "best.safetensors").write_bytes((run_dir / "best.safetensors").read_bytes()[:500])
    assert_user_error(deepnn("eval", str(broken)), "corrupt or truncated")


def test_python_m_and_console_script_agree() -> None:
    script = Path(sys.executable).with_name("deepnn")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert r.stdout.strip() == deepnn("--version").stdout.strip()


def test_train_with_scratch_convolutions(tmp_path: Path) -> None:
    out = tmp_path / "scratch"
    r = deepnn("train", "lenet", "--conv-impl", "scratch", "--epochs", "1", "--set", "data.train_subset=512",
               "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "conv_impl: scratch" in (out / "config.yaml").read_text()
    assert deepnn("eval", str(out)).returncode == 0  # the checkpoint rebuilds the scratch model


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    """A real SIGINT mid-epoch: exit 130 with the resume command, then --resume completes the run."""
    import signal
    import time

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "deepnn", "train", "lenet", "--epochs", "2", "--batch-size", "32",
                             "--set", "data.train_subset=8192", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    seen = ""
    while "epoch 1/2" not in seen and time.time() < deadline:  # the progress bar has started
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert f"--resume {out}" in err and "Traceback" not in err
    assert (out / "last.safetensors").is_file() and not (out / "results.json").exists()

    r = deepnn("train", "lenet", "--resume", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 2
