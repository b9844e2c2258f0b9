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


def test_eval_draws_the_printed_confusion_matrix_and_the_curves(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepnn.analysis.confusion as confusion
    import deepnn.train.plot as plot
    from deepnn.cli import main
    from deepnn.train.plot import read_metrics

    figures, curves = [], []  # what was drawn: spies on the two drawing functions
    real_figure, real_curves = confusion.confusion_figure, plot.plot_curves

    def figure_spy(*args, **kwargs):
        figures.append(real_figure(*args, **kwargs))
        return figures[-1]

    def curves_spy(records, *args, **kwargs):
        curves.append(records)
        return real_curves(records, *args, **kwargs)

    monkeypatch.setattr(confusion, "confusion_figure", figure_spy)
    monkeypatch.setattr(plot, "plot_curves", curves_spy)
    cm, cu = tmp_path / "cm.png", tmp_path / "curves.png"
    assert main(["eval", str(run_dir), "--confusion-png", str(cm), "--curves-png", str(cu)]) == 0
    out = capsys.readouterr().out
    printed = [[int(v) for v in line.split()[-10:]] for line in out.splitlines()[3:13]]
    assert out.splitlines()[2].startswith("true \\ pred") and len(printed) == 10
    assert printed == json.loads((run_dir / "results.json").read_text())["confusion"]  # what results.json says
    assert len(figures) == 1 and [int(t.get_text()) for t in figures[0].axes[0].texts] == sum(printed, [])
    assert cm.read_bytes()[:4] == b"\x89PNG" and f"wrote {cm}" in out
    assert curves == [read_metrics(run_dir / "metrics.jsonl")] and len(curves[0]) == 1  # one epoch, one record
    assert cu.read_bytes()[:4] == b"\x89PNG" and f"wrote {cu}" in out


def test_confusion_figure_holds_the_counts_and_the_row_shares() -> None:
    import matplotlib.pyplot as plt

    from deepnn.analysis.confusion import confusion_figure
    from deepnn.errors import UserError

    fig = confusion_figure([[3, 1, 0], [0, 0, 0], [2, 2, 4]], ["a", "b", "c"], "toy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["3", "1", "0", "0", "0", "0", "2", "2", "4"]  # row by row
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
    for ticks in (ax.get_yticklabels(), ax.get_xticklabels()):
        assert [t.get_text() for t in ticks] == ["a", "b", "c"]
    assert ax.get_ylabel() == "true class" and ax.get_title() == "toy: accuracy 0.5833 on 12 examples"
    plt.close(fig)
    with pytest.raises(UserError, match="there are 2 classes"):
        confusion_figure([[1, 2, 3]], ["a", "b"])


def test_eval_picture_options_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepnn.cli import main

    for option, path, message in [("--confusion-png", "cm.txt", "give a path ending in .png"),
                                  ("--curves-png", "no/such/dir/c.png", "does not exist; create it first")]:
        assert main(["eval", str(run_dir), option, str(tmp_path / path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    bare = tmp_path / "bare"  # a checkpoint without its metrics.jsonl
    bare.mkdir()
    (bare / "last.safetensors").write_bytes((run_dir / "last.safetensors").read_bytes())
    assert main(["eval", str(bare), "--curves-png", str(tmp_path / "c.png")]) == 2
    assert "holds no metrics.jsonl records" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))
    # a checkpoint file: the curves come from the folder it is in
    assert main(["eval", str(run_dir / "last.safetensors"), "--curves-png", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_pictures_of_a_language_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepnn.cli import main

    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 60)
    run = tmp_path / "lm"
    assert main(["train", "char_gru", "--text", str(text), "--epochs", "1", "--batch-size", "8", "--threads", "1",
                 "--set", "model.args.hidden_size=16", "--set", "model.args.num_layers=1", "--set", "data.seq_len=16",
                 "--set", "train.precision=fp32", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--confusion-png", str(tmp_path / "cm.png")]) == 2
    assert "--confusion-png is for image classifiers; char_gru is a language_model model" in capsys.readouterr().err
    assert main(["eval", str(run), "--curves-png", str(tmp_path / "curves.png")]) == 0
    assert "nats/char" in capsys.readouterr().out and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "cm.png").exists()


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
