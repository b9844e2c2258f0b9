"""Lecture item R1, character-level text data (``deepnn.data.text``): reading a file, the character
vocabulary (round trip, unknown characters, checkpoint storage), in-order splits from the end of the
text, and the two batch loaders (truncated BPTT with carried state; random windows)."""

from __future__ import annotations

import doctest
import os
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepnn.data import text as text_mod
from deepnn.data.text import (
    CharVocab,
    RandomWindowLoader,
    SequentialTextLoader,
    eval_windows,
    load_text_data,
    read_text,
)
from deepnn.errors import UserError

SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 7


def write(tmp_path: Path, content: str | bytes, name: str = "t.txt") -> Path:
    p = tmp_path / name
    if isinstance(content, str):
        p.write_bytes(content.encode("utf-8"))
    else:
        p.write_bytes(content)
    return p


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(text_mod, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


# ------------------------------------------------------------------------------------ vocabulary


def test_vocab_is_sorted_distinct_characters_and_round_trips() -> None:
    vocab = CharVocab.from_text("hello, world")
    assert vocab.chars == " ,dehlorw" and len(vocab) == 9
    assert CharVocab.from_text("world, hello") == vocab  # same characters → same indices
    ids = vocab.encode("hello, world")
    assert ids.dtype == torch.int64 and ids.shape == (12,)
    assert ids.tolist() == [vocab.chars.index(ch) for ch in "hello, world"]
    assert vocab.decode(ids) == "hello, world"
    assert vocab.decode(ids.tolist()) == "hello, world"  # a list of ints works too
    assert vocab.decode(ids[4]) == "o"  # and a 0-d tensor
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40).flatmap(
    lambda alphabet: st.tuples(st.just(alphabet), st.text(alphabet=alphabet, max_size=200))))
def test_property_encode_decode_round_trip(case: tuple[str, str]) -> None:
    alphabet, sample = case
    vocab = CharVocab.from_text(alphabet)
    ids = vocab.encode(sample)
    assert ids.shape == (len(sample),)
    assert all(0 <= i < len(vocab) for i in ids.tolist())
    assert vocab.decode(ids) == sample
    assert [vocab.chars[i] for i in ids.tolist()] == list(sample)  # index i really stands for chars[i]
    assert CharVocab.from_list(vocab.to_list()) == vocab


def test_unknown_character_is_an_error_naming_it_and_what() -> None:
    vocab = CharVocab.from_text("abc ")
    with pytest.raises(UserError) as e:
        vocab.encode("a cab — zé", what="the prompt")
    msg = str(e.value)
    assert "the prompt" in msg and "'z'" in msg and "'é'" in msg and "'—'" in msg
    assert "first at position 6" in msg and "vocabulary" in msg
    assert "'a'" not in msg and "'c'" not in msg  # known characters are not blamed
    assert vocab.unknown_chars("abzqa") == ["q", "z"]
    with pytest.raises(UserError, match=r"\.\.\."):  # more than 5 unknown characters are cut short
        vocab.encode("0123456789")


def test_decode_rejects_out_of_range_indices() -> None:
    vocab = CharVocab.from_text("abc")
    with pytest.raises(UserError, match="outside the vocabulary of 3"):
        vocab.decode([0, 3])
    with pytest.raises(UserError, match="outside"):
        vocab.decode(torch.tensor([-1]))


def test_vocab_stored_as_a_list_keeps_its_order() -> None:
    vocab = CharVocab.from_list(["z", "a", "\n"])  # a checkpoint's order defines the indices, not sorting
    assert vocab.to_list() == ["z", "a", "\n"]
    assert vocab.encode("a\nz").tolist() == [1, 2, 0]


@pytest.mark.parametrize("bad", [None, "abc", [], ["a", "bc"], ["a", 1], ["a", "b", "a"], [""], {"a": 1}])
def test_corrupt_vocabulary_in_checkpoint(bad: object) -> None:
    with pytest.raises(UserError, match="corrupt vocabulary in checkpoint"):
        CharVocab.from_list(bad)


# --------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is empty"), (b"  \n\t \r\n", "only whitespace"), (b"abc\x00def", "binary.*NUL byte at offset 3"),
     (b"hello \xff world", "not valid UTF-8.*0xff at offset 6.*convert it to UTF-8"),
     ("caf\u00e9".encode("latin-1"), "not valid UTF-8.*offset 3")],
)
def test_read_text_rejects_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = write(tmp_path, content)
    with pytest.raises(UserError, match=message) as e:
        read_text(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_read_text_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found.*check the path"):
        read_text(tmp_path / "nope.txt")
    write(tmp_path, "text", "inside.txt")
    with pytest.raises(UserError, match="is a directory.*inside.txt.*path of the text file"):
        read_text(tmp_path)


def test_read_text_normalises_windows_newlines_and_keeps_unicode(tmp_path: Path) -> None:
    p = write(tmp_path, "\ufeffline one\r\nzweite Zeile: äöü\r\nlast\n")
    assert read_text(p) == "line one\nzweite Zeile: äöü\nlast\n"


# ---------------------------------------------------------------------------------------- splits


def test_splits_come_from_the_end_in_order(tmp_path: Path) -> None:
    p = write(tmp_path, SAMPLE)
    data = load_text_data(p, val_fraction=0.1, test_fraction=0.2)
    n = len(SAMPLE)
    assert len(data.val) == round(0.1 * n) and len(data.test) == round(0.2 * n)
    assert len(data.train) + len(data.val) + len(data.test) == n
    tr, va, te = (data.vocab.decode(t) for t in (data.train, data.val, data.test))
    assert tr + va + te == SAMPLE
    assert te == SAMPLE[n - len(data.test):]  # test is the last part: held-out text, not shuffled windows
    assert va == SAMPLE[len(data.train):len(data.train) + len(data.val)]
    assert data.vocab == CharVocab.from_text(tr) and data.source == str(p)
    assert all(t.dtype == torch.int64 and t.ndim == 1 for t in (data.train, data.val, data.test))


def test_vocabulary_comes_from_the_training_part_only(tmp_path: Path) -> None:
    p = write(tmp_path, "ab" * 50 + "ba" * 10 + "aXb" * 5)  # 'X' only in the test part
    with pytest.raises(UserError, match=r"test part .* 'X'.*different val_fraction/test_fraction split or clean"):
        load_text_data(p, val_fraction=0.1, test_fraction=0.1)
    with pytest.raises(UserError, match=r"validation part .* 'X'"):  # now 'X' is in the validation part
        load_text_data(p, val_fraction=0.1, test_fraction=0.0)
    data = load_text_data(p, val_fraction=0.0, test_fraction=0.0)  # without held-out parts 'X' is training text
    assert "X" in data.vocab and data.val.shape == data.test.shape == (0,)
    data = load_text_data(write(tmp_path, "ab" * 50 + "ba" * 10 + "aXb" * 5 + "ab" * 10), val_fraction=0.1,
                          test_fraction=0.1)
    assert "X" in data.vocab and len(data.vocab) == 3


def test_stored_vocabulary_is_used_as_given(tmp_path: Path) -> None:
    p = write(tmp_path, "abcabcabcabcabcabcabcabcabcabc")
    vocab = CharVocab.from_list(list("cbaxyz"))
    data = load_text_data(p, vocab=vocab)
    assert data.vocab is vocab and data.train[:3].tolist() == [2, 1, 0]
    with pytest.raises(UserError, match="stored vocabulary.*'c'"):
        load_text_data(p, vocab=CharVocab.from_text("ab"))


def test_zero_validation_fraction_gives_an_empty_split(tmp_path: Path) -> None:
    data = load_text_data(write(tmp_path, SAMPLE), val_fraction=0, test_fraction=0.1)
    assert data.val.shape == (0,) and len(data.test) > 0


@pytest.mark.parametrize("val, test, message", [
    (-0.1, 0.1, "val_fraction must be a number"), (0.1, float("nan"), "test_fraction must be a number"),
    (0.5, 0.5, "below 1"), (0.9, 0.2, "below 1"), ("0.1", 0.1, "val_fraction"),
])
def test_bad_fractions(tmp_path: Path, val: object, test: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_text_data(write(tmp_path, SAMPLE), val_fraction=val, test_fraction=test)  # type: ignore[arg-type]


def test_text_too_short_to_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="too short.*validation part"):
        load_text_data(write(tmp_path, "abcdefghij"), val_fraction=0.05, test_fraction=0.3)


# ----------------------------------------------------------------------------- sequential loader


def positions(n: int) -> torch.Tensor:
    """Tokens that equal their own position in the stream, so a batch shows where it came from."""
    return torch.arange(n)


@pytest.mark.parametrize("n, batch_size, seq_len", [(1000, 4, 7), (257, 3, 16), (64, 1, 5)])
def test_sequential_loader_carries_state_across_batches(n: int, batch_size: int, seq_len: int) -> None:
    stream = positions(n)
    loader = SequentialTextLoader(stream, batch_size, seq_len, seed=3)
    for epoch in range(4):
        batches = list(loader.batches(epoch))
        assert len(batches) == len(loader) >= 1
        off = loader.offset(epoch)
        assert 0 <= off < seq_len
        for i, (x, y, carry) in enumerate(batches):
            assert x.shape == y.shape == (batch_size, seq_len) and x.dtype == torch.int64
            assert carry is (i > 0)  # reset on the first batch of an epoch only
            assert torch.equal(y, stream[x + 1])  # y is the next token of x
            assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # each row is a contiguous piece of the stream
            if i == 0:
                assert x[0, 0].item() == off
            else:
                prev = batches[i - 1][0]
                assert torch.equal(x[:, 0], prev[:, -1] + 1)  # row b continues exactly where it ended
        rows = torch.cat([x for x, _, _ in batches], dim=1)  # (B, R)
        assert torch.equal(rows.flatten(), torch.arange(off, off + rows.numel()))  # rows tile the stream
        assert rows.max().item() + 1 < n  # the last target exists


def test_sequential_loader_on_real_text_reads_the_text_in_order() -> None:
    vocab = CharVocab.from_text(SAMPLE)
    loader = SequentialTextLoader(vocab.encode(SAMPLE), batch_size=3, seq_len=10, seed=1)
    x_rows = torch.cat([x for x, _, _ in loader.batches(2)], dim=1)
    off, r = loader.offset(2), loader.row_len
    for b in range(3):
        assert vocab.decode(x_rows[b]) == SAMPLE[off + b * r:off + (b + 1) * r]


def test_sequential_loader_is_deterministic_and_resumes_mid_epoch() -> None:
    stream = torch.randint(0, 50, (5000,), generator=torch.Generator().manual_seed(0))
    a = SequentialTextLoader(stream, 8, 32, seed=7)
    b = SequentialTextLoader(stream, 8, 32, seed=7)
    offsets = [a.offset(e) for e in range(10)]
    assert len(set(offsets)) > 1  # a random offset per epoch: the chunk boundaries move
    assert offsets == [b.offset(e) for e in range(10)]
    assert {len(list(a.batches(e))) for e in range(10)} == {len(a)}  # same length every epoch
    for epoch in (0, 3):
        full = list(a.batches(epoch))
        again = list(b.batches(epoch))
        assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) and p[2] == q[2] for p, q in zip(full, again))
        for k in (1, len(a) - 1):
            tail = list(a.batches(epoch, start=k))
            assert len(tail) == len(full) - k
            assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) and p[2] == q[2]
                       for p, q in zip(tail, full[k:]))
    assert [SequentialTextLoader(stream, 8, 32, seed=8).offset(e) for e in range(10)] != offsets
    fixed = SequentialTextLoader(stream, 8, 32, random_offset=False)
    assert {fixed.offset(e) for e in range(5)} == {0}


def test_sequential_loader_too_short_names_the_sizes() -> None:
    with pytest.raises(UserError) as e:
        SequentialTextLoader(positions(100), batch_size=8, seq_len=16)
    msg = str(e.value)
    assert "100 tokens" in msg and "batch_size 8" in msg and "seq_len 16" in msg and "--batch-size" in msg
    with pytest.raises(UserError, match="batch_size must be a positive"):
        SequentialTextLoader(positions(100), batch_size=0, seq_len=4)


def test_eval_windows_score_every_target_once() -> None:
    for n, batch_size, seq_len in [(1000, 4, 7), (50, 16, 8), (3, 64, 10), (234_000, 64, 256)]:
        loader = eval_windows(positions(n), seq_len, batch_size)
        batches = list(loader.batches(0))
        assert len(batches) == len(loader)
        assert [c for _, _, c in batches] == [False] + [True] * (len(batches) - 1)
        x = torch.cat([b[0] for b in batches], dim=1)
        y = torch.cat([b[1] for b in batches], dim=1)
        assert torch.equal(y, x + 1) and torch.equal(x.flatten(), torch.arange(x.numel()))  # in order, no gaps
        assert loader.scored_tokens == y.numel() > n - 1 - loader.batch_size  # all but < B targets scored
        assert [b[0].shape[1] for b in batches[:-1]] == [seq_len] * (len(batches) - 1)
    assert [x.shape for x, _, _ in eval_windows(positions(3), 10, 64).batches(0)] == [(2, 1)]
    with pytest.raises(UserError, match="at least 2"):
        eval_windows(positions(1), 4, 4)


# --------------------------------------------------------------------------------- random windows


def test_random_window_loader() -> None:
    n, batch_size, seq_len = 300, 5, 12
    stream = positions(n)
    loader = RandomWindowLoader(stream, batch_size, seq_len, seed=2)
    assert len(loader) == n // (batch_size * seq_len)
    epochs = [list(loader.batches(e)) for e in range(3)]
    for batches in epochs:
        assert len(batches) == len(loader)
        for x, y, carry in batches:
            assert x.shape == y.shape == (batch_size, seq_len) and carry is False
            assert torch.equal(y, x + 1)  # next token
            assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # a contiguous window of the stream
            assert x.min() >= 0 and y.max() <= n - 1  # inside the stream
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])  # a fresh draw each epoch
    again = RandomWindowLoader(stream, batch_size, seq_len, seed=2)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(epochs[1], again.batches(1)))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(epochs[2][2:], loader.batches(2, start=2)))
    assert not torch.equal(RandomWindowLoader(stream, batch_size, seq_len, seed=3).offsets(0), loader.offsets(0))
    assert len(RandomWindowLoader(stream, 64, 64)) == 1
    assert len(RandomWindowLoader(stream, 2, 4, steps_per_epoch=9)) == 9
    hit = torch.zeros(n, dtype=torch.bool)
    for _, y, _ in RandomWindowLoader(stream, 50, 12, steps_per_epoch=20).batches(0):
        hit[y.flatten()] = True
    assert hit[1:].float().mean() > 0.9 and hit[-1]  # windows reach the very end of the stream
    with pytest.raises(UserError, match="too short.*seq_len 12"):
        RandomWindowLoader(positions(12), 2, 12)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_batches_stay_on_the_tokens_device(device: str) -> None:
    stream = positions(500).to(device)
    for loader in (SequentialTextLoader(stream, 4, 8), RandomWindowLoader(stream, 4, 8), eval_windows(stream, 8, 4)):
        x, y, _ = next(loader.batches(0))
        assert x.device == y.device == stream.device


# --------------------------------------------------------------------------------------- real data


def shakespeare_path() -> Path:
    root = os.environ.get("DEEPNN_DATA")
    path = Path(root) / "shakespeare" / "shakespeare.txt" if root else None
    if path is None or not path.is_file():
        pytest.skip(f"shakespeare.txt not found (DEEPNN_DATA={root!r}; expected <DEEPNN_DATA>/shakespeare/)")
    return path


def test_shakespeare_default_split() -> None:
    path = shakespeare_path()
    t0 = time.perf_counter()
    data = load_text_data(path)
    seconds = time.perf_counter() - t0
    assert seconds < 2.0, f"load_text_data took {seconds:.2f} s for {path.stat().st_size} bytes"
    assert len(data.vocab) == 84
    n = len(data.train) + len(data.val) + len(data.test)
    assert abs(len(data.val) - 0.05 * n) <= 1 and abs(len(data.test) - 0.05 * n) <= 1
    text = read_text(path)
    assert n == len(text)
    assert data.vocab.decode(data.test) == text[-len(data.test):]
    assert data.vocab.decode(data.train[:200]) == text[:200]
    assert CharVocab.from_list(data.vocab.to_list()) == data.vocab
    loader = SequentialTextLoader(data.train, 64, 256)
    x, y, carry = next(loader.batches(0))
    assert x.shape == (64, 256) and not carry
