"""Character-level text data (lecture item R1): text → tokens → vocabulary → indices → minibatches.

The pipeline, each step visible in the code::

    read_text(path)              the raw text, one Python str (UTF-8, Windows newlines normalised)
      → tokens                   its characters: the model predicts one character at a time
      → CharVocab.from_text      the vocabulary: the sorted distinct characters of the training text
      → vocab.encode             indices: one int64 per character, a LongTensor (N,)
      → SequentialTextLoader     minibatches: x (B, T) and y (B, T) = x shifted by one character

A small example:

    >>> vocab = CharVocab.from_text("hello")
    >>> vocab.chars, len(vocab)
    ('ehlo', 4)
    >>> ids = vocab.encode("hello")
    >>> ids
    tensor([1, 0, 2, 2, 3])
    >>> vocab.decode(ids)
    'hello'
    >>> loader = SequentialTextLoader(vocab.encode("hellohellohello"), batch_size=2, seq_len=3,
    ...                               random_offset=False)
    >>> x, y, carry = next(loader.batches(0))
    >>> vocab.decode(x[0]), vocab.decode(y[0]), carry       # y is x one character later
    ('hel', 'ell', False)

**Unknown characters are an error.** The vocabulary has no "unknown" token: a character the training
text never contains has no trained embedding and no output logit, so encoding it (in a prompt, in a
held-out file) raises a :class:`~deepnn.errors.UserError` that names the characters and the fix,
instead of silently mapping them to something else.

**Splits come from the end of the text, in order** (:func:`load_text_data`): training is the first
``1 - val_fraction - test_fraction`` of the characters, validation the next part, test the last part.
Nothing is shuffled across the boundaries, so the held-out text really is text the model never saw
(shuffled windows of one novel would leak neighbouring sentences into the training set). The
vocabulary is built from the training part only; for the lecture's Shakespeare file the first 90 %
already holds all 84 distinct characters, so the default split works as is.

Batches follow char-rnn (Karpathy, 2015, "The Unreasonable Effectiveness of Recurrent Neural
Networks"): an Elman-style recurrent network (Elman, 1990, "Finding Structure in Time") reads the text
in chunks of ``seq_len`` characters and carries its hidden state from one chunk to the next —
truncated backpropagation through time (:class:`SequentialTextLoader`). :class:`RandomWindowLoader`
draws independent windows instead (no state carried; the usual choice for Transformers).

Both loaders have the interface of :class:`~deepnn.data.loader.TensorLoader`: ``len(loader)`` batches
per epoch, ``loader.batches(epoch, start)`` yields the batches of ``epoch`` skipping the first
``start``, and the order depends only on ``(seed, epoch)``, so a resumed run sees exactly the batches
the interrupted one would have seen. Batches stay on the device of the token tensor.

For data-parallel training both have ``shard(rank, world_size)``: ``batch_size`` stays the global
number of rows (streams or windows) and process ``rank`` reads rows
``rank * B/W .. (rank + 1) * B/W - 1`` of every batch; ``len()`` is unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .loader import check_shardable

TextBatch = tuple[torch.Tensor, torch.Tensor, bool]
"""``(x (B, T) int64, y (B, T) int64, carry)``: y[b, t] is the character after x[b, t]; ``carry`` says
whether row b continues where row b of the previous batch ended (keep the recurrent state) or not
(reset it)."""

_SHOW = 5  # unknown characters named in an error message


# --------------------------------------------------------------------------------------- reading


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file into one string.

    Windows newlines ``\\r\\n`` become ``\\n`` (so a file has the same characters on every platform)
    and a leading UTF-8 byte-order mark is dropped. Every problem is a one-line :class:`UserError`
    naming the fix: a missing file, a directory, an empty or whitespace-only file, binary content
    (a NUL byte) or invalid UTF-8 (with the byte offset of the first bad byte).
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.suffix == ".txt")[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise UserError(f"{p} is a directory, not a text file{hint}; pass the path of the text file itself")
    if not p.exists():
        raise UserError(f"text file {p} not found; check the path, or pass an existing UTF-8 text file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}; check the path and its permissions") from None
    if not raw:
        raise UserError(f"{p} is empty (0 bytes); pass a text file that holds some text")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise UserError(f"{p} looks binary, not text (NUL byte at offset {nul}); pass a plain UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{p} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); convert it to UTF-8 first, "
            f"e.g. iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise UserError(f"{p} holds only whitespace ({len(raw)} bytes); pass a text file that holds some text")
    return text


def _code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as a uint32 array ``(len(text),)``, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


# ------------------------------------------------------------------------------------ vocabulary


class CharVocab:
    """A character vocabulary: index ``i`` stands for the character ``chars[i]``.

    Built from the training text by :meth:`from_text` (its sorted distinct characters, so the same
    text always gives the same indices). There is no unknown token: encoding a character outside the
    vocabulary is a :class:`UserError` (see the module docstring). :meth:`to_list` /
    :meth:`from_list` store it in a checkpoint's JSON metadata.
    """

    def __init__(self, chars: str | Sequence[str]) -> None:
        chars = "".join(chars)
        if not chars:
            raise UserError("a vocabulary needs at least one character; build it from a non-empty text")
        if len(set(chars)) != len(chars):
            raise ValueError(f"vocabulary characters must be distinct, got {chars!r}")
        self._chars = chars
        self._codes = _code_points(chars)  # (V,) code point of each index
        top = int(self._codes.max())
        # lookup table over code points: table[c] = index of chr(c), or -1; one slot past the top for "others"
        self._table = np.full(top + 2, -1, dtype=np.int64)
        self._table[self._codes] = np.arange(len(chars), dtype=np.int64)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted distinct characters of ``text`` (use the training text only)."""
        if not text:
            raise UserError("cannot build a vocabulary from empty text; pass the training text")
        return cls("".join(sorted(set(text))))

    @property
    def chars(self) -> str:
        """All characters, in index order."""
        return self._chars

    def __len__(self) -> int:
        return len(self._chars)

    def __contains__(self, ch: object) -> bool:
        return isinstance(ch, str) and len(ch) == 1 and ch in self._chars

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other._chars == self._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"CharVocab({self._chars!r})"

    def _lookup(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        codes = _code_points(text)
        ids = self._table[np.minimum(codes, len(self._table) - 1)]
        return codes, ids

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, sorted."""
        codes, ids = self._lookup(text)
        return [chr(c) for c in np.unique(codes[ids < 0])]

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """Characters → indices: a LongTensor ``(len(text),)``.

        ``what`` names the text in the error raised for characters outside the vocabulary
        (e.g. ``"the prompt"``, ``"held_out.txt"``). Vectorised: a lookup table over code points,
        about 0.1 s for 5 MB of text.
        """
        codes, ids = self._lookup(text)
        bad = ids < 0
        if bad.any():
            unknown = [chr(c) for c in np.unique(codes[bad])]
            shown = ", ".join(repr(ch) for ch in unknown[:_SHOW]) + (", ..." if len(unknown) > _SHOW else "")
            raise UserError(
                f"{what} has {len(unknown)} character(s) not in the vocabulary of {len(self)} characters: {shown} "
                f"(first at position {int(np.argmax(bad))}); remove or replace them, or use a vocabulary built "
                f"from text that contains them"
            )
        return torch.from_numpy(ids)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Indices (a 0-d or 1-d integer tensor, or a list of ints) → the string they stand for."""
        arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise ValueError(f"decode takes a 1-d sequence of indices, got shape {arr.shape}")
        if arr.size == 0:
            return ""
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"decode takes integer indices, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= len(self):
            raise UserError(f"index {lo if lo < 0 else hi} is outside the vocabulary of {len(self)} characters "
                            f"(0..{len(self) - 1}); decode with the vocabulary the model was trained with")
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_list(self) -> list[str]:
        """The characters as a JSON-friendly list (index order), for a checkpoint's metadata."""
        return list(self._chars)

    @classmethod
    def from_list(cls, chars: object) -> CharVocab:
        """The inverse of :meth:`to_list`; checks that ``chars`` is a list of distinct one-character strings."""
        if not isinstance(chars, (list, tuple)) or not chars:
            raise UserError(f"corrupt vocabulary in checkpoint: expected a non-empty list of characters, "
                            f"got {type(chars).__name__}; re-save the checkpoint from a training run")
        bad = [c for c in chars if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise UserError(f"corrupt vocabulary in checkpoint: entries must be one-character strings, "
                            f"got {bad[0]!r}; re-save the checkpoint from a training run")
        if len(set(chars)) != len(chars):
            dup = next(c for c in chars if chars.count(c) > 1)
            raise UserError(f"corrupt vocabulary in checkpoint: character {dup!r} appears more than once; "
                            f"re-save the checkpoint from a training run")
        return cls("".join(chars))


# ---------------------------------------------------------------------------------------- splits


@dataclass
class TextData:
    """A text as indices, split in order: ``train`` (N,), ``val`` (M,), ``test`` (K,) int64 tensors.

    ``decode(train) + decode(val) + decode(test)`` is the whole text; ``source`` is the file it came from.
    """

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    source: str


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a number ≥ 0 (a fraction of the text, e.g. 0.05), got {value!r}")
    return float(value)


def load_text_data(path: str | Path, *, val_fraction: float = 0.05, test_fraction: float = 0.05,
                   vocab: CharVocab | None = None) -> TextData:
    """Read a text file, build the vocabulary and split the indices in order.

    Training is the first ``1 - val_fraction - test_fraction`` of the characters, validation the next
    ``val_fraction``, test the last ``test_fraction`` (held out; for the final report). Part sizes are
    rounded to whole characters; a part whose fraction is > 0 must hold at least 2 characters (one
    input and its next-character target). The vocabulary is built from the training part unless
    ``vocab`` is given (resuming or evaluating with the vocabulary stored in a checkpoint). A
    validation or test character that the training part lacks is a :class:`UserError`.
    """
    val_f, test_f = _fraction("val_fraction", val_fraction), _fraction("test_fraction", test_fraction)
    if val_f + test_f >= 1:
        raise UserError(f"val_fraction + test_fraction must be below 1 (training needs the rest), "
                        f"got {val_f} + {test_f}; lower them, e.g. 0.05 each")
    p = Path(path)
    text = read_text(p)
    n = len(text)
    n_val, n_test = round(n * val_f), round(n * test_f)
    n_train = n - n_val - n_test
    for part, size, frac in (("training", n_train, 1.0), ("validation", n_val, val_f), ("test", n_test, test_f)):
        if frac > 0 and size < 2:
            raise UserError(f"{p.name} is too short to split: {n} characters leave {size} for the {part} part "
                            f"(needs at least 2); use a longer text or change val_fraction/test_fraction")
    parts = {"training": text[:n_train], "validation": text[n_train:n_train + n_val],
             "test": text[n_train + n_val:]}
    where = {"training": f"the first {n_train} characters", "validation": f"characters {n_train}..{n_train + n_val}",
             "test": f"the last {n_test} characters"}
    if vocab is None:
        vocab = CharVocab.from_text(parts["training"])
        for part in ("validation", "test"):
            unknown = vocab.unknown_chars(parts[part])
            if unknown:
                shown = ", ".join(repr(ch) for ch in unknown[:_SHOW]) + (", ..." if len(unknown) > _SHOW else "")
                raise UserError(
                    f"the {part} part of {p.name} ({where[part]}) has {len(unknown)} character(s) that the training "
                    f"part never contains: {shown}; choose a different val_fraction/test_fraction split or clean "
                    f"the text (remove or replace these characters)"
                )
        ids = {k: vocab.encode(v, f"the {k} part of {p.name}") for k, v in parts.items()}
    else:
        ids = {k: vocab.encode(v, f"the {k} part of {p.name} (with the stored vocabulary)") for k, v in parts.items()}
    return TextData(vocab=vocab, train=ids["training"], val=ids["validation"], test=ids["test"], source=str(p))


# --------------------------------------------------------------------------------------- loaders


def _check_tokens(tokens: torch.Tensor) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 1 or tokens.dtype.is_floating_point \
            or tokens.dtype == torch.bool or tokens.is_complex():
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a 1-d integer tensor (N,), got {shape}")


def _check_sizes(batch_size: int, seq_len: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise UserError(f"seq_len must be a positive integer, got {seq_len!r}")


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class _Sharded:
    """Data parallelism for the text loaders: each of ``world_size`` processes takes its part of the rows
    (streams or windows) of every global batch."""

    rank, world_size, batch_size = 0, 1, 1

    def shard(self, rank: int, world_size: int):  # noqa: ANN201 - the same class
        """This loader for process ``rank`` of ``world_size``: part ``rank`` of the rows of every batch."""
        check_shardable(self.batch_size, world_size)
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def _rows(self) -> slice:
        part = self.batch_size // self.world_size
        return slice(self.rank * part, (self.rank + 1) * part)


class SequentialTextLoader(_Sharded):
    """Truncated backpropagation through time (char-rnn, Karpathy 2015): batches that carry state.

    The token stream (N,) is cut into ``batch_size`` contiguous rows of ``R`` tokens each (row ``b``
    starts where row ``b - 1`` ends), after skipping ``offset`` tokens at the start. Batch ``i`` is::

        x = rows[:, i*T:(i+1)*T]          (B, T) int64
        y = the same window one token later (B, T): y[b, t] is the token after x[b, t]

    so row ``b`` of batch ``i + 1`` continues exactly where row ``b`` of batch ``i`` ended: a recurrent
    network (Elman, 1990) keeps its hidden state between the batches of an epoch and detaches it
    (truncation). Each batch is ``(x, y, carry)``: ``carry`` is False on the first batch of an epoch
    (reset the state) and True after it. A run resumed with ``start=k`` that did not store the state
    starts batch ``k`` from a fresh state; the batches themselves are the same.

    With ``random_offset`` each epoch skips a seeded random ``offset`` in ``[0, seq_len)``, so the chunk
    boundaries fall elsewhere every epoch; ``len(loader)`` is the same for all epochs (computed for
    the largest offset). Without it (evaluation) the offset is 0.

    ``drop_last=False`` (evaluation, see :func:`eval_windows`) keeps a last, shorter batch
    ``(B, R mod T)`` so the rows are scored to their end: ``scored_tokens = B * R`` targets, all but
    fewer than ``batch_size`` of the ``N - 1`` (with ``drop_last=True``, fewer than ``B * (T + 1)``
    are left out per epoch, plus the offset).

    Args:
        tokens: indices ``(N,)`` (any integer dtype; any device, batches stay there).
        batch_size: rows ``B``; seq_len: time steps ``T`` per batch (the truncation length).
        seed: seeds the offsets (with the epoch number).
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, seq_len: int, *, seed: int = 0,
                 random_offset: bool = True, drop_last: bool = True) -> None:
        _check_tokens(tokens)
        _check_sizes(batch_size, seq_len)
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.seed, self.random_offset, self.drop_last = seed, random_offset, drop_last
        max_offset = seq_len - 1 if random_offset else 0
        row = (len(tokens) - 1 - max_offset) // batch_size  # tokens per row that have a next token
        if drop_last:
            row = row // seq_len * seq_len
        if row < (seq_len if drop_last else 1):
            need = batch_size * (seq_len if drop_last else 1) + 1 + max_offset
            raise UserError(
                f"the text is too short for one batch: {len(tokens)} tokens, but batch_size {batch_size} × "
                f"seq_len {seq_len} needs at least {need}" + (" (with a random offset up to seq_len - 1)"
                                                             if max_offset else "")
                + "; use a smaller --batch-size or data.seq_len, or a longer text"
            )
        self.row_len = row

    @property
    def scored_tokens(self) -> int:
        """Targets per epoch: ``batch_size * row_len`` (every batch position has one)."""
        return self.batch_size * self.row_len

    def __len__(self) -> int:
        return -(-self.row_len // self.seq_len)

    def offset(self, epoch: int) -> int:
        """Tokens skipped at the start of ``epoch``: seeded by ``(seed, epoch)``, or 0."""
        if not self.random_offset:
            return 0
        return int(torch.randint(0, self.seq_len, (1,), generator=_generator(self.seed, epoch)))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[TextBatch]:
        """Batches of ``epoch``, skipping the first ``start`` (to resume mid-epoch)."""
        off, B, R, T = self.offset(epoch), self.batch_size, self.row_len, self.seq_len
        rows_x = self.tokens[off:off + B * R].reshape(B, R)[self._rows()]
        rows_y = self.tokens[off + 1:off + 1 + B * R].reshape(B, R)[self._rows()]
        for i in range(start, len(self)):
            sl = slice(i * T, (i + 1) * T)
            yield rows_x[:, sl].contiguous(), rows_y[:, sl].contiguous(), i > 0

    def __iter__(self) -> Iterator[TextBatch]:
        return self.batches(0)


def eval_windows(tokens: torch.Tensor, seq_len: int, batch_size: int) -> SequentialTextLoader:
    """Deterministic batches that score a validation or test split once, state carried throughout.

    No random offset, and the last shorter batch is kept, so all but fewer than ``batch_size`` of the
    ``N - 1`` next-character targets are scored (``loader.scored_tokens`` says how many): the mean loss
    is the per-character loss of the whole split. ``batch_size`` is lowered to ``N - 1`` for a split
    shorter than that.
    """
    _check_tokens(tokens)
    if len(tokens) < 2:
        raise UserError(f"cannot evaluate on {len(tokens)} token(s): a split needs at least 2 "
                        f"(an input and its next character); use a larger val_fraction/test_fraction")
    _check_sizes(batch_size, seq_len)
    return SequentialTextLoader(tokens, min(batch_size, len(tokens) - 1), seq_len, random_offset=False,
                                drop_last=False)


class RandomWindowLoader(_Sharded):
    """Independent random windows: each batch holds ``batch_size`` windows of ``seq_len`` tokens.

    Window ``j`` starts at a random offset ``o`` (seeded by ``(seed, epoch)``): ``x[j] = tokens[o:o+T]``,
    ``y[j] = tokens[o+1:o+T+1]``, both ``(B, T)`` int64. No state is carried (``carry`` is always
    False). ``steps_per_epoch`` defaults to ``len(tokens) // (batch_size * seq_len)`` (at least 1),
    about one pass over the text.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, seq_len: int, *, steps_per_epoch: int | None = None,
                 seed: int = 0) -> None:
        _check_tokens(tokens)
        _check_sizes(batch_size, seq_len)
        if len(tokens) < seq_len + 1:
            raise UserError(f"the text is too short for one window: {len(tokens)} tokens, but seq_len {seq_len} "
                            f"needs at least {seq_len + 1}; use a smaller data.seq_len or a longer text")
        if steps_per_epoch is None:
            steps_per_epoch = max(1, len(tokens) // (batch_size * seq_len))
        if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise UserError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.steps_per_epoch, self.seed = steps_per_epoch, seed

    def __len__(self) -> int:
        return self.steps_per_epoch

    def offsets(self, epoch: int) -> torch.Tensor:
        """Window starts of ``epoch``: ``(steps_per_epoch, batch_size)`` int64 on the tokens' device."""
        high = len(self.tokens) - self.seq_len  # o + T + 1 <= N
        starts = torch.randint(0, high, (len(self), self.batch_size), generator=_generator(self.seed, epoch))
        return starts.to(self.tokens.device)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[TextBatch]:
        """Batches of ``epoch``, skipping the first ``start`` (to resume mid-epoch)."""
        starts = self.offsets(epoch)[:, self._rows()]
        steps = torch.arange(self.seq_len, device=self.tokens.device)
        for i in range(start, len(self)):
            idx = starts[i].unsqueeze(1) + steps  # (B, T)
            yield self.tokens[idx], self.tokens[idx + 1], False

    def __iter__(self) -> Iterator[TextBatch]:
        return self.batches(0)


__all__ = [
    "CharVocab", "RandomWindowLoader", "SequentialTextLoader", "TextBatch", "TextData", "eval_windows",
    "load_text_data", "read_text",
]
