"""Language models from the command line: train on any text, sample, eval, export, results, gradflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_user_error, deepnn

TEXT = "".join(f"{w} the {v} of {n}.\n" for w in ("To be", "Or not", "Whether 'tis") for v in ("slings", "arrows")
               for n in ("fortune", "troubles", "the sea", "a dream")) * 12


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "hamlet.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gru"
    r = deepnn("train", "char_gru", "--text", str(text_file), "--epochs", "2", "--batch-size", "8", "--threads", "1",
               "--set", "model.args.hidden_size=32", "--set", "data.seq_len=32", "--set", "train.precision=fp32",
               "--set", "train.val_every_minutes=null", "--set", "train.val_every_steps=5", "--out", str(out),
               "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "nats/char" in r.stdout and "tokens/s" in r.stdout
    return out


def test_train_writes_a_language_model_run(lm_run: Path) -> None:
    results = json.loads((lm_run / "results.json").read_text())
    assert results["task"] == "language_model" and results["threads"] == 1
    assert {"test_loss", "test_bits_per_char", "test_perplexity", "tokens_per_s", "best_val_loss"} <= set(results)
    assert results["tokens_per_s"] == pytest.approx(results["steps"] * 8 * 32 / results["train_time_s"], rel=0.02)
    records = [json.loads(line) for line in (lm_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records][:2] == [5, 10]  # validation every 5 steps, not only at epoch ends
    assert min(r["val_loss"] for r in records) == results["best_val_loss"]
    assert (lm_run / "best.safetensors").is_file() and (lm_run / "curves.png").is_file()


def test_sample_is_reproducible_and_checks_the_prompt(lm_run: Path) -> None:
    a = deepnn("sample", str(lm_run), "--prompt", "To be", "--length", "40", "--top-k", "5", "--seed", "3")
    b = deepnn("sample", str(lm_run), "--prompt", "To be", "--length", "40", "--top-k", "5", "--seed", "3")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("To be") and len(a.stdout.rstrip("\n")) >= 45
    greedy = deepnn("sample", str(lm_run), "--prompt", "To", "--length", "20", "--temperature", "0")
    assert greedy.returncode == 0, greedy.stderr
    assert_user_error(deepnn("sample", str(lm_run), "--prompt", "Zebra&"), "not in the vocabulary", "the prompt")
    assert_user_error(deepnn("sample", str(lm_run), "--top-p", "1.5"), "top_p")


def test_eval_reports_what_results_json_reports(lm_run: Path, text_file: Path, tmp_path: Path) -> None:
    results = json.loads((lm_run / "results.json").read_text())
    r = deepnn("eval", str(lm_run))
    assert r.returncode == 0, r.stderr
    assert f"loss {results['test_loss']:.4f} nats/char" in r.stdout and "final weights" in r.stdout
    other = tmp_path / "other.txt"
    other.write_text("To be the slings of the sea.\n" * 5)
    r = deepnn("eval", str(lm_run), "--text", str(other))
    assert r.returncode == 0 and "bits/char" in r.stdout, r.stderr
    other.write_text("Quixotic!\n")
    assert_user_error(deepnn("eval", str(lm_run), "--text", str(other)), "not in the vocabulary")
    other.write_bytes(b"\x00\x01binary")
    assert_user_error(deepnn("eval", str(lm_run), "--text", str(other)))


def test_bad_text_and_wrong_task_are_one_line_errors(text_file: Path, tmp_path: Path, lm_run: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(deepnn("train", "char_lstm", "--text", str(empty), "--out", str(tmp_path / "a")), "empty")
    assert not (tmp_path / "a").exists()
    short = tmp_path / "short.txt"
    short.write_text("just a few characters\n")
    assert_user_error(deepnn("train", "char_lstm", "--text", str(short), "--out", str(tmp_path / "b")))
    assert_user_error(deepnn("train", "char_lstm", "--out", str(tmp_path / "c")), "--text")
    assert_user_error(deepnn("train", "lenet", "--text", str(text_file)), "language models")
    assert_user_error(deepnn("predict", str(lm_run), str(text_file)), "deepnn sample")


def test_export_results_models_and_gradflow_dispatch_on_the_task(lm_run: Path, tmp_path: Path) -> None:
    r = deepnn("export", str(lm_run), "-o", str(tmp_path / "lm.onnx"))
    assert r.returncode == 0, r.stderr
    assert "token ids" in r.stdout and (tmp_path / "lm.onnx").is_file()
    r = deepnn("results", str(lm_run))
    assert r.returncode == 0 and "test loss (nats/char)" in r.stdout and "char_gru" in r.stdout, r.stderr
    assert_user_error(deepnn("chart", str(lm_run), "-o", str(tmp_path / "c.png")), "image classifier")
    r = deepnn("models", "--task", "language_model")
    assert r.returncode == 0 and "char_lstm" in r.stdout and "vocab_size=84" in r.stdout
    r = deepnn("gradflow", "--runs", str(lm_run), "--steps", "20", "--batch", "2", "-o", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    assert "GRU trained" in r.stdout and "GRU at init" in r.stdout and (tmp_path / "g.png").is_file()


def test_bench_times_a_language_model() -> None:
    r = deepnn("bench", "train", "char_gru", "--input", "16", "--steps", "2", "--warmup", "1", "--batch-size", "4",
               "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "tokens/s" in r.stdout
