"""Translation from the command line: train on a pairs file, translate, eval (BLEU/chrF), attention maps,
and the errors a user meets (malformed lines, wrong run kind, unknown text)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_cli import assert_user_error, deepnn

WORDS = {"the": "le", "red": "rouge", "blue": "bleu", "cat": "chat", "dog": "chien", "big": "grand",
         "small": "petit", "sees": "voit", "eats": "mange", "fish": "poisson", "a": "un", "bird": "oiseau"}


def make_pairs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = list(WORDS)
    lines = []
    for _ in range(n):
        en = [rng.choice(words) for _ in range(rng.randint(2, 5))]
        lines.append(" ".join(en) + "\t" + " ".join(WORDS[w] for w in en))
    return lines


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "toy.tsv"
    lines = make_pairs(700, 0)
    lines.insert(9, "a line without a tab")  # line 10: malformed, reported, not silently dropped
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory: pytest.TempPathFactory, pairs_file: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mt"
    r = deepnn("train", "transformer_mt", "--pairs", str(pairs_file), "--epochs", "3", "--threads", "1",
               "--set", "data.holdout_pairs=60", "--set", "data.vocab_size=40", "--set", "data.max_tokens=600",
               "--set", "model.args.d_model=32", "--set", "model.args.dim_feedforward=64",
               "--set", "model.args.num_encoder_layers=1", "--set", "model.args.num_decoder_layers=1",
               "--set", "data.bleu_sentences=20", "--set", "train.beam_size=3", "--set", "train.precision=fp32",
               "--set", "train.val_every_minutes=null", "--set", "optim.lr=3e-3", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "line 10 (no tab)" in r.stderr  # the malformed line, by number
    assert "test BLEU" in r.stdout and "beam 3" in r.stdout
    return out


def test_train_writes_a_translation_run(mt_run: Path) -> None:
    results = json.loads((mt_run / "results.json").read_text())
    assert results["task"] == "seq2seq" and results["test_translated"] == 60
    assert {"test_bleu", "test_chrf", "test_bleu_beam3", "test_chrf_beam3", "test_loss",
            "best_val_bleu"} <= set(results)
    assert 0 <= results["test_bleu"] <= 100 and len(results["examples"]) == 3
    records = [json.loads(line) for line in (mt_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_translated"] for r in records] == [20] * len(records)  # data.bleu_sentences, at each record
    assert max(r["val_bleu"] for r in records) == results["best_val_bleu"]
    assert records[-1]["val_loss"] < records[0]["val_loss"] or records[0]["val_loss"] < 1.0


def test_eval_reproduces_the_report(mt_run: Path) -> None:
    results = json.loads((mt_run / "results.json").read_text())
    r = deepnn("eval", str(mt_run), "--beam", "3")
    assert r.returncode == 0, r.stderr
    assert f"BLEU {results['test_bleu']:.2f}  chrF {results['test_chrf']:.2f}" in r.stdout
    assert f"BLEU {results['test_bleu_beam3']:.2f}" in r.stdout and "beam 3" in r.stdout


def test_eval_on_a_pairs_file(mt_run: Path, tmp_path: Path) -> None:
    f = tmp_path / "more.tsv"
    f.write_text("\n".join(make_pairs(30, 5)) + "\n")
    r = deepnn("eval", str(mt_run), "--pairs", str(f), "--beam", "1")
    assert r.returncode == 0, r.stderr
    assert "(30 pairs)" in r.stdout and "greedy: BLEU" in r.stdout


def test_translate_is_reproducible_after_a_restart(mt_run: Path, tmp_path: Path) -> None:
    """Two separate processes load the run folder and translate identically (greedy and beam)."""
    f = tmp_path / "in.txt"
    f.write_text("the red cat\nthe small dog eats a fish\n")
    for beam in ("1", "3"):
        a = deepnn("translate", str(mt_run), "--file", str(f), "--beam", beam)
        b = deepnn("translate", str(mt_run), "--file", str(f), "--beam", beam)
        assert a.returncode == 0, a.stderr
        assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 2
    one = deepnn("translate", str(mt_run), "the red cat")
    assert one.stdout.splitlines()[0] == a.stdout.splitlines()[0] or beam != "1"


def test_translate_errors(mt_run: Path, tmp_path: Path) -> None:
    assert_user_error(deepnn("translate", str(mt_run)), "nothing to translate")
    assert_user_error(deepnn("translate", str(mt_run), "日本語"), "only of unknown pieces")
    assert_user_error(deepnn("translate", str(mt_run), "the cat", "--beam", "0"), "--beam")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert_user_error(deepnn("eval", str(mt_run), "--pairs", str(empty)), "empty")


def test_export_refuses_a_translation_run(mt_run: Path, tmp_path: Path) -> None:
    assert_user_error(deepnn("export", str(mt_run), "-o", str(tmp_path / "mt.onnx")), "translation model")


def test_attention_map(mt_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "attn.png"
    r = deepnn("attention", str(mt_run), "the big bird sees a cat", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000 and "1 layer(s)" in r.stdout


def test_seq2seq_commands_refuse_other_runs(tmp_path: Path, pairs_file: Path) -> None:
    from test_cli_lm import TEXT

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = tmp_path / "lm"
    r = deepnn("train", "hello", "--text", str(text), "--epochs", "1", "--batch-size", "4", "--threads", "1",
               "--set", "data.seq_len=8", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert_user_error(deepnn("translate", str(out), "the cat"), "needs a translation run")
    assert_user_error(deepnn("attention", str(out), "the cat"), "needs a translation run")
    assert_user_error(deepnn("eval", str(out), "--pairs", str(pairs_file)),
                      "--pairs, --beam and --exposure-bias are for translation")
    assert_user_error(deepnn("train", "lenet", "--pairs", str(pairs_file)), "--pairs is for translation models")
    assert_user_error(deepnn("train", "transformer_mt", "--text", str(text)), "--text is for language models")
    assert_user_error(deepnn("train", "transformer_mt", "--epochs", "1"), "--pairs FILE")


def test_exposure_bias(mt_run: Path) -> None:
    """T5: the same model scored with gold prefixes and with its own; the gold prefix can only help on average."""
    r = deepnn("eval", str(mt_run), "--split", "val", "--exposure-bias")
    assert r.returncode == 0, r.stderr
    lines = {line.split(":")[0].strip(): line for line in r.stdout.splitlines()[1:]}
    assert set(lines) == {"teacher-forced (gold prefix)", "free-running (own prefix)"}
    loss = {k: float(v.split("loss ")[1].split()[0]) for k, v in lines.items()}
    assert loss["teacher-forced (gold prefix)"] <= loss["free-running (own prefix)"] + 1e-6
