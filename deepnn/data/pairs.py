"""Sentence pairs for translation: a TSV file → subword ids → token-bucketed batches.

The pipeline, each step visible in the code::

    read_pairs(path)             the pairs of a ``source<TAB>target`` file, one per line (malformed lines
                                 skipped and reported by PairsFile.warning())
      → Tokenizer.train          one shared subword vocabulary for both languages (SentencePiece)
      → tokenizer.encode         ids per sentence, lists of ints (no BOS/EOS)
      → filter_long              drop (and count) training pairs longer than the model's max_len
      → PairBatches              batches of similar-length pairs, src (B, S) and tgt (B, T) padded with PAD

**Subwords.** Words are cut into pieces from a fixed vocabulary learned on the training text, so every
sentence can be written with a few thousand ids and rare words are spelled out of common pieces
(Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword Units"). The pieces come
from the unigram language model of Kudo (2018, "Subword Regularization") as implemented by
SentencePiece (Kudo & Richardson, 2018), which treats the text as raw characters (a space becomes
``▁``), so decoding is exact detokenisation: no language-specific rules. Source and target share one
vocabulary (as in Vaswani et al., 2017, "Attention Is All You Need", which shares it for
English–French), with the fixed special ids ``PAD=0, UNK=1, BOS=2, EOS=3``.

**Normalisation: none** (SentencePiece's ``identity`` rule, extra whitespace kept). The usual ``nmt_nfkc``
rule would rewrite the text before learning: ``…`` → ``...``, a no-break space → a space, runs of
spaces → one space (all of them occur in the en-fr data), so a decoded translation would differ from
the reference in ways the model never chose. With ``identity`` and ``character_coverage=1.0``,
``decode(encode(s)) == s`` for every sentence whose characters occur in the training text (French
accents, ``« »`` quotes, ``%s`` placeholders included). A character never seen in training becomes
``UNK`` and decodes as `` ⁇ ``.

**Long pairs.** :func:`filter_long` drops training pairs with a side longer than ``max_len - 1`` tokens
(one position is kept for EOS); the caller reports how many. At translation time nothing is dropped:
the caller truncates the source instead.

**Batches** (:class:`PairBatches`) hold about the same number of tokens rather than sentences, with
pairs of similar length together so little of each batch is padding (Vaswani et al., 2017, §5.1:
"sentence pairs were batched together by approximate sequence length"). The batches are built once,
so ``len(loader)`` is fixed; each epoch visits them in a seeded order (the project's loader protocol:
``loader.batches(epoch, start)``, ``loader.shard(rank, world_size)``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .text import read_text

PAD, UNK, BOS, EOS = 0, 1, 2, 3
"""The special ids, the same in every :class:`Tokenizer`."""

PairBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(src (B, S) int64, tgt (B, T) int64, index (B,) int64)``: each row is ``ids + [EOS]`` padded with PAD on
the right; ``index[b]`` is row b's position in the lists the loader was built from."""

_SHOW = 5  # skipped line numbers named in a warning


# --------------------------------------------------------------------------------------- reading


@dataclass
class PairsFile:
    """The sentence pairs of one file and the lines that were skipped.

    ``pairs`` are ``(source, target)`` strings, stripped of surrounding whitespace, in file order;
    ``skipped`` are ``(line number, reason)`` with 1-based line numbers.
    """

    source: Path
    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def warning(self) -> str | None:
        """One line naming the skipped lines (at most 5, then "and N more"), or None if none were skipped."""
        n = len(self.skipped)
        if not n:
            return None
        shown = ", ".join(f"line {i} ({why})" for i, why in self.skipped[:_SHOW])
        more = f" and {n - _SHOW} more" if n > _SHOW else ""
        return (f"skipped {n} malformed line{'s' if n > 1 else ''} of {self.source}: {shown}{more} "
                f"(fix or delete {'them' if n > 1 else 'it'})")


def _problem(line: str) -> str | None:
    """Why ``line`` is not a ``source<TAB>target`` pair, or None when it is one."""
    if not line.strip():
        return "blank line"
    tabs = line.count("\t")
    if tabs == 0:
        return "no tab"
    if tabs > 1:
        return "more than one tab"
    src, tgt = line.split("\t")
    if not src.strip():
        return "empty source and target sides" if not tgt.strip() else "empty source side"
    if not tgt.strip():
        return "empty target side"
    return None


def read_pairs(path: str | Path) -> PairsFile:
    """Read a ``source<TAB>target`` file (UTF-8, one pair per line) into a :class:`PairsFile`.

    Malformed lines (no tab, more than one tab, an empty side, a blank line inside the file) are
    skipped and listed in ``skipped``; the caller prints :meth:`PairsFile.warning`. Blank lines at the
    very end are ignored silently, Windows line ends (``\\r\\n``) are accepted. A missing, binary,
    non-UTF-8 or empty file, or one where no line is a pair, is a :class:`UserError`.
    """
    p = Path(path)
    text = read_text(p)  # missing / directory / empty / binary / non-UTF-8 → UserError
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    out = PairsFile(source=p)
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        why = _problem(line)
        if why is None:
            src, tgt = line.split("\t")
            out.pairs.append((src.strip(), tgt.strip()))
        else:
            out.skipped.append((number, why))
    if not out.pairs:
        first = ", ".join(f"line {i}: {why}" for i, why in out.skipped[:3])
        raise UserError(f"{p} holds no sentence pairs: none of its {len(lines)} lines is 'source<TAB>target' "
                        f"({first}); write one pair per line, the two sides separated by a single tab")
    return out


# ------------------------------------------------------------------------------------- tokenizer


_MODEL_TYPES = ("unigram", "bpe", "char", "word")


def _sentencepiece():  # noqa: ANN202 - the module
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - a dependency of the package
        raise UserError("the translation tokenizer needs the sentencepiece package; "
                        "install it with: pip install sentencepiece") from None
    return sentencepiece



def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a protobuf varint at ``pos``: ``(value, next position)``."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The top-level ``(field number, value)`` of a protobuf message (varints as int, the rest as bytes)."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5, 2):
            if wire == 2:
                size, pos = _varint(data, pos)
            else:
                size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, value


def _check_complete(model: bytes) -> None:
    """A model cut short can still parse (SentencePiece then uses defaults, e.g. NFKC normalisation): check
    that the ModelProto has its trainer and normaliser specs and as many pieces as it was trained for."""
    pieces, trainer, normalizer = 0, None, False
    for number, value in _fields(model):
        pieces += number == 1
        trainer = value if number == 2 else trainer
        normalizer |= number == 3
    if not isinstance(trainer, bytes) or not normalizer:
        raise ValueError("the trainer or normaliser spec is missing")
    vocab = next((v for n, v in _fields(trainer) if n == 4), None)  # TrainerSpec.vocab_size
    if vocab != pieces:
        raise ValueError(f"it holds {pieces} pieces but was trained for {vocab}")


class Tokenizer:
    """A SentencePiece subword model with one vocabulary for both languages.

    Ids ``0..3`` are ``PAD, UNK, BOS, EOS`` (see the module docstring for the normalisation). Build one
    with :meth:`train`; store it with :meth:`to_bytes` / :meth:`to_base64` (e.g. in a checkpoint's JSON
    metadata) and load it with :meth:`from_bytes` / :meth:`from_base64`.

        >>> tok = Tokenizer.train(english + french, vocab_size=4000)        # doctest: +SKIP
        >>> ids = tok.encode(["Le chat dort."])                            # doctest: +SKIP
        >>> tok.decode(ids)                                                # doctest: +SKIP
        ['Le chat dort.']
    """

    def __init__(self, model: bytes) -> None:
        """Load a serialised model (use :meth:`train` or :meth:`from_bytes`)."""
        if not isinstance(model, (bytes, bytearray)) or not model:
            raise UserError("corrupt tokenizer: the stored model is empty; re-save the checkpoint from a training "
                            "run or train a new tokenizer")
        spm = _sentencepiece()
        try:
            sp = spm.SentencePieceProcessor(model_proto=bytes(model))
            _check_complete(bytes(model))
        except (RuntimeError, ValueError) as e:
            why = str(e).strip().split("\n")[0] or "parse error"
            raise UserError(f"corrupt tokenizer: the stored SentencePiece model cannot be read ({why}); "
                            f"re-save the checkpoint from a training run or train a new tokenizer") from None
        ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
        if sp.get_piece_size() <= EOS or ids != (PAD, UNK, BOS, EOS):
            raise UserError(f"the SentencePiece model has special ids pad/unk/bos/eos = {ids} and "
                            f"{sp.get_piece_size()} pieces, but this project needs (0, 1, 2, 3); "
                            f"train it with Tokenizer.train")
        self._model = bytes(model)
        self._sp = sp

    # ------------------------------------------------------------------------------ build/store

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4000, model_type: str = "unigram") -> Tokenizer:
        """Learn a ``vocab_size``-piece model from ``texts`` (source and target sentences together).

        In memory (no files), one thread, ``character_coverage=1.0`` (every character of the text gets
        a piece), no normalisation: the same texts always give the same model bytes. ``model_type`` is
        ``"unigram"`` (Kudo, 2018) or ``"bpe"`` (Sennrich et al., 2016), or SentencePiece's
        ``"char"``/``"word"``. About 3 s for the 67k sentences of en-fr.train.tsv at 4000 pieces.
        """
        if model_type not in _MODEL_TYPES:
            raise UserError(f"unknown tokenizer model_type {model_type!r}; use one of {', '.join(_MODEL_TYPES)}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= EOS + 1:
            raise UserError(f"vocab_size must be an integer above {EOS + 1} (4 ids are PAD/UNK/BOS/EOS), "
                            f"got {vocab_size!r}; e.g. 4000")
        if isinstance(texts, str):
            raise TypeError("Tokenizer.train takes an iterable of sentences, not one string; wrap it in a list")
        sentences = [t for t in texts if t]
        bad = next((t for t in sentences if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"Tokenizer.train takes strings, got a {type(bad).__name__}")
        if not sentences:
            raise UserError("cannot train a tokenizer on no text: all sentences are empty; pass the training "
                            "sentences of both languages")
        spm = _sentencepiece()
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
                character_coverage=1.0, num_threads=1, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
                normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2,
            )
        except RuntimeError as e:
            msg = str(e)
            high = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", msg)
            if high:
                raise UserError(f"vocab_size {vocab_size} is too large for this text: a {model_type} tokenizer "
                                f"can learn at most {high.group(1)} pieces from these {len(sentences)} sentences; "
                                f"lower vocab_size (e.g. model.args.vocab_size) to at most {high.group(1)}, "
                                f"or train on more text") from None
            low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", msg)
            if low:
                raise UserError(f"vocab_size {vocab_size} is too small for this text: its distinct characters "
                                f"and the 4 special ids need {low.group(1)} pieces; raise vocab_size "
                                f"(e.g. model.args.vocab_size) to at least {low.group(1)}") from None
            raise UserError(f"SentencePiece could not train a tokenizer: {msg.strip()}; check the training text "
                            f"and vocab_size") from None
        return cls(buf.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> Tokenizer:
        """The inverse of :meth:`to_bytes`; a corrupt blob is a :class:`UserError`."""
        return cls(data)

    def to_bytes(self) -> bytes:
        """The serialised SentencePiece model (a few hundred kB at most)."""
        return self._model

    @classmethod
    def from_base64(cls, s: str) -> Tokenizer:
        """The inverse of :meth:`to_base64`; a corrupt string is a :class:`UserError`."""
        if not isinstance(s, str) or not s:
            raise UserError(f"corrupt tokenizer in checkpoint: expected a base64 string, got {type(s).__name__}; "
                            f"re-save the checkpoint from a training run")
        try:
            data = base64.b64decode(s.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise UserError("corrupt tokenizer in checkpoint: the model is not valid base64; re-save the "
                            "checkpoint from a training run") from None
        return cls(data)

    def to_base64(self) -> str:
        """The model as an ASCII string, to store inside JSON (checkpoint metadata)."""
        return base64.b64encode(self._model).decode("ascii")

    def __getstate__(self) -> bytes:
        return self._model

    def __setstate__(self, state: bytes) -> None:
        self.__init__(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and other._model == self._model

    def __hash__(self) -> int:
        return hash(self._model)

    def __repr__(self) -> str:
        return f"Tokenizer({len(self)} pieces)"

    # --------------------------------------------------------------------------------------- use

    def __len__(self) -> int:
        """The vocabulary size (special ids included): the model's embedding and output size."""
        return self._sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Sentences → lists of ids (no BOS/EOS added; :class:`PairBatches` appends EOS)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of sentences, not one string; use encode([text])")
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: list[list[int]] | torch.Tensor) -> list[str]:
        """Id sequences (a list of lists, or a ``(B, T)`` integer tensor) → detokenised strings.

        Each row is read up to its first EOS (model output after it is ignored); PAD and BOS are
        dropped. UNK decodes as `` ⁇ ``.
        """
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
                raise ValueError(f"decode takes a (B, T) integer tensor, got {tuple(ids.shape)} {ids.dtype}")
            rows = ids.detach().cpu().tolist()
        else:
            rows = [list(r) for r in ids]
        V = len(self)
        clean = []
        for r in rows:
            if EOS in r:
                r = r[:r.index(EOS)]
            r = [int(i) for i in r if i != PAD and i != BOS]
            if r and (min(r) < 0 or max(r) >= V):
                bad = min(r) if min(r) < 0 else max(r)
                raise UserError(f"id {bad} is outside the tokenizer's {V} pieces (0..{V - 1}); decode with the "
                                f"tokenizer the model was trained with")
            clean.append(r)
        return [self._sp.decode(r) for r in clean]

    def tokens(self, text: str) -> list[str]:
        """The pieces of one sentence (``▁`` marks a space), e.g. for the axes of an attention map."""
        return self._sp.encode(text, out_type=str)

    def piece(self, token_id: int) -> str:
        """The piece of one id (``▁`` marks a space), e.g. for the axes of an attention map."""
        if not 0 <= token_id < len(self):
            raise UserError(f"token id {token_id} is outside the vocabulary [0, {len(self)})")
        return self._sp.id_to_piece(int(token_id))

    def unknown_fraction(self, ids: list[int]) -> float:
        """The fraction of ``ids`` that are UNK (characters the tokenizer never saw); 0.0 for no ids."""
        ids = list(ids)
        return sum(1 for i in ids if i == UNK) / len(ids) if ids else 0.0


# ------------------------------------------------------------------------------------ long pairs


def filter_long(src: list[list[int]], tgt: list[list[int]], max_len: int) -> tuple[list[int], list[int]]:
    """Split pair indices into ``(kept, dropped)``: a pair is dropped when a side has more than
    ``max_len - 1`` ids (room for the EOS the batches append).

    Policy: too-long *training* pairs are dropped and the caller reports how many; at translation time
    nothing is dropped, the caller truncates the source to ``max_len - 1`` ids instead.
    """
    if len(src) != len(tgt):
        raise UserError(f"source and target lists differ in length ({len(src)} vs {len(tgt)}); "
                        f"pass one target per source sentence")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise UserError(f"max_len must be an integer ≥ 2 (at least one token and EOS), got {max_len!r}")
    kept, dropped = [], []
    for i, (s, t) in enumerate(zip(src, tgt)):
        (dropped if len(s) >= max_len or len(t) >= max_len else kept).append(i)
    return kept, dropped


# --------------------------------------------------------------------------------------- batches


def _flatten(seqs: Sequence[Sequence[int]], what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(flat ids, offsets (N,), lengths (N,))`` of a list of id lists, as int64 arrays."""
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs), dtype=np.int64)
    np.cumsum(lens[:-1], out=offsets[1:])
    try:
        flat = np.fromiter((int(i) for s in seqs for i in s), dtype=np.int64, count=int(lens.sum()))
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a list of lists of integer ids") from None
    if flat.size and flat.min() < 0:
        raise UserError(f"{what} holds a negative id ({int(flat.min())}); pass the ids from Tokenizer.encode")
    return flat, offsets, lens


def _pad(flat: np.ndarray, offsets: np.ndarray, lens: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """Rows ``idx`` as ``ids + [EOS]`` padded with PAD on the right: ``(B, max len + 1)`` int64."""
    L = lens[idx][:, None]  # (B, 1)
    cols = np.arange(int(L.max()) + 1)  # (W,)
    pos = np.minimum(offsets[idx][:, None] + cols, max(flat.size - 1, 0))  # (B, W)
    body = flat[pos] if flat.size else np.zeros(pos.shape, dtype=np.int64)
    out = np.where(cols < L, body, np.where(cols == L, EOS, PAD))
    return torch.from_numpy(out.astype(np.int64, copy=False))


class PairBatches:
    """Token-bucketed batches of sentence pairs (Vaswani et al., 2017, §5.1).

    Every example is ``src_ids + [EOS]`` and ``tgt_ids + [EOS]``. At construction the examples are
    sorted by ``(max(src length, tgt length), src length)`` (ties broken by a permutation seeded with
    ``seed``) and consecutive runs are cut greedily into batches whose padded size
    ``B * max(S, T)`` stays ≤ ``max_tokens`` (and ``B ≤ max_sentences`` if given); an example longer
    than ``max_tokens`` alone gets a batch of its own. So ``len(loader)`` is the same every epoch.

    With ``shuffle`` each epoch visits the batches in a permutation seeded by ``(seed, epoch)``,
    without it in length order. Each batch is ``(src (B, S), tgt (B, T), index (B,))``, int64 on the
    CPU, padded with PAD on the right; ``index`` gives each row's position in ``src``/``tgt`` (to find
    the reference sentence).

    :meth:`shard` gives process ``rank`` of ``world_size`` the batches ``rank, rank + W, ...`` of
    every epoch's order; all processes get ``len(loader) = n_batches // W`` (the last few batches of
    the order are left out of that epoch).

    Args:
        src, tgt: id lists per sentence (from :meth:`Tokenizer.encode`), the same number of each.
        max_tokens: the budget of padded positions per batch and side.
        shuffle: a new batch order each epoch (training) or the fixed length order (evaluation).
        seed: seeds the tie-break and the epoch orders.
        max_sentences: at most this many pairs per batch (None: no limit).
    """

    rank, world_size = 0, 1

    def __init__(self, src: list[list[int]], tgt: list[list[int]], max_tokens: int, *, shuffle: bool,
                 seed: int = 0, max_sentences: int | None = None) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise UserError(f"max_tokens must be a positive integer (padded tokens per batch), got {max_tokens!r}")
        if max_sentences is not None and (isinstance(max_sentences, bool) or not isinstance(max_sentences, int)
                                          or max_sentences < 1):
            raise UserError(f"max_sentences must be a positive integer or None, got {max_sentences!r}")
        if len(src) != len(tgt):
            raise UserError(f"source and target lists differ in length ({len(src)} vs {len(tgt)}); "
                            f"pass one target per source sentence")
        if not len(src):
            raise UserError("no sentence pairs to batch; pass a non-empty list of pairs (were they all filtered "
                            "out as too long?)")
        self.max_tokens, self.shuffle, self.seed, self.max_sentences = max_tokens, shuffle, seed, max_sentences
        self._src = _flatten(src, "src")
        self._tgt = _flatten(tgt, "tgt")
        ls, lt = self._src[2] + 1, self._tgt[2] + 1  # with EOS
        tie = np.random.default_rng(seed).permutation(len(ls))
        order = np.lexsort((tie, ls, np.maximum(ls, lt)))  # the last key is the primary one
        self._batches: list[np.ndarray] = []
        cur: list[int] = []
        s_max = t_max = 0
        for i in order.tolist():
            s, t = max(s_max, int(ls[i])), max(t_max, int(lt[i]))
            full = max_sentences is not None and len(cur) >= max_sentences
            if cur and (full or (len(cur) + 1) * max(s, t) > max_tokens):
                self._batches.append(np.asarray(cur, dtype=np.int64))
                cur, s, t = [], int(ls[i]), int(lt[i])
            cur.append(i)
            s_max, t_max = s, t
        self._batches.append(np.asarray(cur, dtype=np.int64))
        real = padded = 0
        for b in self._batches:
            real += int(ls[b].sum() + lt[b].sum())
            padded += len(b) * int(ls[b].max() + lt[b].max())
        self._padding_fraction = 1.0 - real / padded
        self._tokens = int(lt.sum())

    @property
    def padding_fraction(self) -> float:
        """PAD positions / all positions, over src and tgt of all batches (of the whole data, also when
        sharded)."""
        return self._padding_fraction

    @property
    def tokens(self) -> int:
        """Real target tokens (EOS included) in all batches: the tokens an unsharded epoch predicts."""
        return self._tokens

    @property
    def num_batches(self) -> int:
        """Batches built from the whole data (``len(loader)`` before sharding)."""
        return len(self._batches)

    def __len__(self) -> int:
        return len(self._batches) // self.world_size

    def order(self, epoch: int) -> np.ndarray:
        """The global batch order of ``epoch`` (a permutation of ``range(num_batches)``, seeded by
        ``(seed, epoch)`` when shuffling, else ``0, 1, ...``)."""
        n = len(self._batches)
        if not self.shuffle:
            return np.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g).numpy()

    def shard(self, rank: int, world_size: int) -> PairBatches:
        """This loader for process ``rank`` of ``world_size``: batches ``rank, rank + W, ...`` of every
        epoch's order, ``num_batches // world_size`` of them for every process."""
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise UserError(f"world_size must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UserError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        if len(self._batches) < world_size:
            raise UserError(f"only {len(self._batches)} batch(es) for {world_size} processes; use fewer processes "
                            f"or a smaller max_tokens so every process gets at least one batch")
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def batch(self, b: int) -> PairBatch:
        """Global batch number ``b`` (in length order): ``(src (B, S), tgt (B, T), index (B,))``."""
        idx = self._batches[b]
        return _pad(*self._src, idx), _pad(*self._tgt, idx), torch.from_numpy(idx.copy())

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[PairBatch]:
        """Batches of ``epoch``, skipping the first ``start`` (to resume mid-epoch); this process's share
        when sharded."""
        mine = self.order(epoch)[self.rank::self.world_size][:len(self)]
        for k in range(start, len(self)):
            yield self.batch(int(mine[k]))

    def __iter__(self) -> Iterator[PairBatch]:
        return self.batches(0)


__all__ = [
    "BOS", "EOS", "PAD", "UNK", "PairBatch", "PairBatches", "PairsFile", "Tokenizer", "filter_long", "read_pairs",
]
