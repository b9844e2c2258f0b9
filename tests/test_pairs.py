"""Translation data (``deepnn.data.pairs``): reading a ``source<TAB>target`` file (malformed lines reported
with their numbers), the shared SentencePiece tokenizer (deterministic, exact round trip, storage in a
checkpoint), dropping long pairs, and the token-bucketed batch loader."""

from __future__ import annotations

import itertools
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepnn.data.pairs import BOS, EOS, PAD, UNK, PairBatches, PairsFile, Tokenizer, filter_long, read_pairs
from deepnn.errors import UserError

# ------------------------------------------------------------------------------------------ data


def write(tmp_path: Path, content: str | bytes, name: str = "p.tsv") -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def _synthetic_pairs(n: int) -> list[tuple[str, str]]:
    """English/French-looking pairs with accents, « » quotes and printf placeholders."""
    rng = random.Random(0)
    en_n = ["file", "table", "server", "user", "function", "column", "index", "window", "message", "location"]
    fr_n = ["fichier", "table", "serveur", "utilisateur", "fonction", "colonne", "index", "fenêtre", "message",
            "emplacement"]
    en_v = ["could not open", "cannot drop", "failed to read", "will remove", "has created", "expects"]
    fr_v = ["n'a pas pu ouvrir", "ne peut pas supprimer", "a échoué à lire", "va retirer", "a créé", "attend"]
    en_a = ["original", "binary", "textual", "logical", "current", "previous"]
    fr_a = ["d’origine", "binaire", "textuelle", "logique", "courante", "précédente"]
    out = []
    for _ in range(n):
        i, j, k, a = rng.randrange(10), rng.randrange(10), rng.randrange(6), rng.randrange(6)
        ph = rng.choice(["%s", "%d", "%u"])
        en = f'The {en_n[i]} "{ph}" {en_v[k]} the {en_a[a]} {en_n[j]}.'
        fr = f"Le {fr_n[i]} « {ph} » {fr_v[k]} la {fr_n[j]} {fr_a[a]} à été."
        if rng.random() < 0.3:
            en, fr = en + f" Line {rng.randrange(1000)}.", fr + f" Ligne {rng.randrange(1000)} : déjà vu."
        out.append((en, fr))
    return out


def _real_pairs(n: int) -> list[tuple[str, str]] | None:
    root = os.environ.get("DEEPNN_DATA")
    f = Path(root) / "translation" / "en-fr.train.tsv" if root else None
    if f is None or not f.is_file():
        return None
    with f.open(encoding="utf-8") as fh:
        lines = list(itertools.islice(fh, n))
    return [tuple(s.strip() for s in line.rstrip("\n").split("\t")) for line in lines if line.count("\t") == 1]


# Real-looking lines that must survive encode → decode exactly (they are also part of the training text,
# so every character is covered).
EXACT = [
    'logical decoding output plugin "%s" produces binary output, but function "%s" expects textual data',
    "le plugin de sortie « %s » pour le décodage logique produit une sortie binaire, mais la fonction « %s » "
    "attend des données texte",
    "Impossible de recréer l’emplacement d’origine :",
    "n'a pas pu ouvrir le fichier « %s » : %m",
    "la valeur %d est hors de l'intervalle pour le paramètre « %s » (%d .. %d)",
    "Élève à l’hôtel, où ça coûte 12 € ; déjà vu… Noël !",
    "two  spaces and a no-break\u00a0space stay as they are",
]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[tuple[str, str]]]:
    """2,000 training pairs (the shared en-fr file when DEEPNN_DATA has it, else synthetic) + 100 held out."""
    pairs = _real_pairs(2100) or _synthetic_pairs(2100)
    return {"train": pairs[:2000], "held_out": pairs[2000:]}


def _texts(pairs: list[tuple[str, str]]) -> list[str]:
    return [s for s, _ in pairs] + [t for _, t in pairs]


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return Tokenizer.train(_texts(corpus["train"]) + EXACT, vocab_size=300)


# ------------------------------------------------------------------------------------ read_pairs


GOOD_AND_BAD = (
    "hello\tbonjour\n"          # 1
    "no tab here\n"             # 2
    "a\tb\tc\n"                 # 3
    "\tsans source\n"           # 4
    "no target\t   \n"          # 5
    "\n"                        # 6 blank inside the file
    "  spaced  \t  espacé  \n"  # 7
    "   \t \n"                  # 8
    "ok\td'accord\n"            # 9
    "\n\n  \n"                  # blank lines at the end: ignored
)


def test_read_pairs_reports_malformed_lines_with_numbers_and_reasons(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD_AND_BAD)
    pf = read_pairs(p)
    assert isinstance(pf, PairsFile) and pf.source == p
    assert pf.pairs == [("hello", "bonjour"), ("spaced", "espacé"), ("ok", "d'accord")]
    assert pf.skipped == [(2, "no tab"), (3, "more than one tab"), (4, "empty source side"),
                          (5, "empty target side"), (6, "blank line"), (8, "blank line")]
    assert pf.warning() == (
        f"skipped 6 malformed lines of {p}: line 2 (no tab), line 3 (more than one tab), "
        f"line 4 (empty source side), line 5 (empty target side), line 6 (blank line) and 1 more "
        f"(fix or delete them)"
    )


def test_read_pairs_warning_is_none_when_clean_and_singular_for_one(tmp_path: Path) -> None:
    assert read_pairs(write(tmp_path, "a\tb\nc\td\n")).warning() is None
    p = write(tmp_path, "a\tb\nc d\n", "one.tsv")
    assert read_pairs(p).warning() == f"skipped 1 malformed line of {p}: line 2 (no tab) (fix or delete it)"


def test_read_pairs_warning_lists_five_then_counts(tmp_path: Path) -> None:
    lines = ["ok\tok"] + [f"bad line {i}" for i in range(2, 14)]  # lines 2..13 malformed
    w = read_pairs(write(tmp_path, "\n".join(lines))).warning()
    assert w is not None and "skipped 12 malformed lines" in w
    assert "line 2 (no tab), line 3 (no tab), line 4 (no tab), line 5 (no tab), line 6 (no tab) and 7 more" in w
    assert "line 7 " not in w


def test_read_pairs_crlf_and_bom(tmp_path: Path) -> None:
    pf = read_pairs(write(tmp_path, "\ufeffone\tun\r\ntwo\tdeux\r\nthree\r\n\r\n".encode()))
    assert pf.pairs == [("one", "un"), ("two", "deux")]
    assert pf.skipped == [(3, "no tab")]


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty"),
    (b"   \n\n", "whitespace"),
    (b"a\tb\x00c\n", "binary"),
    ("caf\u00e9\tcaf\u00e9\n".encode("latin1"), "UTF-8"),
    (b"no tabs\nat all\n", "no sentence pairs"),
    (b"\ta\nb\t\n", "no sentence pairs"),
])
def test_read_pairs_bad_files_are_user_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    p = write(tmp_path, content, "bad.tsv")
    with pytest.raises(UserError, match=needle) as e:
        read_pairs(p)
    assert "bad.tsv" in str(e.value) and "\n" not in str(e.value)


def test_read_pairs_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.tsv.*not found"):
        read_pairs(tmp_path / "nope.tsv")
    with pytest.raises(UserError, match="directory"):
        read_pairs(tmp_path)


def test_read_pairs_real_validation_file() -> None:
    root = os.environ.get("DEEPNN_DATA")
    f = Path(root or "/nonexistent") / "translation" / "en-fr.valid.tsv"
    if not f.is_file():
        pytest.skip("DEEPNN_DATA has no translation/en-fr.valid.tsv")
    pf = read_pairs(f)
    assert len(pf.pairs) == 2000 and pf.skipped == [] and pf.warning() is None
    assert all(s and t and s == s.strip() and "\t" not in s + t for s, t in pf.pairs)


# ------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_special_ids_and_size(tok: Tokenizer) -> None:
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert len(tok) == 300
    assert [tok._sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]


def test_tokenizer_training_is_deterministic(corpus) -> None:
    texts = _texts(corpus["train"][:500])
    a = Tokenizer.train(texts, vocab_size=200)
    b = Tokenizer.train(iter(list(texts)), vocab_size=200)  # any iterable
    assert a.to_bytes() == b.to_bytes() and a == b
    c = Tokenizer.train(texts[:-50], vocab_size=200)
    assert c.to_bytes() != a.to_bytes()
    bpe = Tokenizer.train(texts, vocab_size=200, model_type="bpe")
    assert len(bpe) == 200 and bpe.to_bytes() == Tokenizer.train(texts, vocab_size=200, model_type="bpe").to_bytes()


def test_tokenizer_round_trips_real_lines_exactly(tok: Tokenizer, corpus) -> None:
    ids = tok.encode(EXACT)
    assert all(BOS not in r and EOS not in r and UNK not in r for r in ids)  # nothing added, nothing unknown
    assert tok.decode(ids) == EXACT  # accents, « », ’, …, €, %s/%d, double space and NBSP all survive
    assert "".join(tok.tokens(EXACT[1])).replace("▁", " ").strip() == EXACT[1]
    train = _texts(corpus["train"])
    assert tok.decode(tok.encode(train)) == train
    # held-out sentences round-trip whenever the training text has all their characters
    seen = set("".join(train + EXACT))
    held = [s for s in _texts(corpus["held_out"]) if set(s) <= seen]
    assert len(held) >= 150
    assert tok.decode(tok.encode(held)) == held


def test_tokenizer_decode_drops_pad_bos_and_stops_at_eos(tok: Tokenizer) -> None:
    a, b = tok.encode(["le fichier", "la table"])
    rows = [[BOS, *a, EOS, *b, PAD], [BOS, *b, EOS, PAD, PAD, PAD], [*a]]
    assert tok.decode(rows) == ["le fichier", "la table", "le fichier"]
    width = max(map(len, rows))
    t = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    assert tok.decode(t) == ["le fichier", "la table", "le fichier"]
    assert tok.decode([[EOS, *a]]) == [""]
    with pytest.raises(UserError, match="outside"):
        tok.decode([[5, len(tok)]])
    with pytest.raises(ValueError):
        tok.decode(torch.tensor([5, 6]))


def test_tokenizer_unknown_characters(tok: Tokenizer) -> None:
    (ids,) = tok.encode(["le ☃ fichier"])
    assert UNK in ids
    assert tok.unknown_fraction(ids) == pytest.approx(ids.count(UNK) / len(ids)) and tok.unknown_fraction(ids) > 0
    assert "⁇" in tok.decode([ids])[0]
    assert tok.unknown_fraction(tok.encode(["le fichier"])[0]) == 0.0
    assert tok.unknown_fraction([]) == 0.0


def test_tokenizer_storage_round_trip(tok: Tokenizer) -> None:
    data = tok.to_bytes()
    again = Tokenizer.from_bytes(data)
    assert again.to_bytes() == data and again.encode(EXACT) == tok.encode(EXACT)
    s = tok.to_base64()
    assert isinstance(s, str) and s.isascii()
    assert Tokenizer.from_base64(s).to_bytes() == data
    assert pickle.loads(pickle.dumps(tok)).encode(EXACT) == tok.encode(EXACT)


@pytest.mark.parametrize("blob", [b"", b"garbage bytes", "FLIP"])
def test_tokenizer_corrupt_blob_is_user_error(tok: Tokenizer, blob) -> None:
    if blob == "FLIP":
        data = tok.to_bytes()
        blob = bytes([0xFF]) * 8 + data[8:]
    with pytest.raises(UserError, match="corrupt tokenizer"):
        Tokenizer.from_bytes(blob)


def test_tokenizer_truncated_model_is_user_error(tok: Tokenizer) -> None:
    # a cut at a piece boundary still parses in SentencePiece (with default NFKC normalisation!): must be caught
    data = tok.to_bytes()
    for cut in [*range(1, len(data), max(1, len(data) // 60)), len(data) - 1]:
        with pytest.raises(UserError, match="corrupt tokenizer"):
            Tokenizer.from_bytes(data[:cut])


def test_tokenizer_corrupt_base64_is_user_error() -> None:
    for s in ["not base64 !!", "", "é"]:
        with pytest.raises(UserError, match="corrupt tokenizer"):
            Tokenizer.from_base64(s)


def test_tokenizer_training_errors(corpus) -> None:
    texts = _texts(corpus["train"][:100])
    with pytest.raises(UserError, match=r"too large.*at most \d+") as e:
        Tokenizer.train(texts, vocab_size=50_000)
    most = int(str(e.value).split("at most ")[1].split(" ")[0])
    assert len(Tokenizer.train(texts, vocab_size=most)) == most  # the suggested size really works
    with pytest.raises(UserError, match=r"too small.*at least \d+"):
        Tokenizer.train(texts, vocab_size=10)
    with pytest.raises(UserError, match="no text"):
        Tokenizer.train([], vocab_size=100)
    with pytest.raises(UserError, match="no text"):
        Tokenizer.train(["", ""], vocab_size=100)
    with pytest.raises(UserError, match="model_type"):
        Tokenizer.train(texts, model_type="wordpiece")
    with pytest.raises(TypeError):
        Tokenizer.train("one string", vocab_size=100)


def test_tokenizer_encode_rejects_a_bare_string(tok: Tokenizer) -> None:
    with pytest.raises(TypeError):
        tok.encode("le fichier")


# ----------------------------------------------------------------------------------- filter_long


def test_filter_long_boundaries() -> None:
    src = [[5] * 3, [5] * 4, [5], [5] * 2, []]
    tgt = [[6] * 3, [6], [6] * 4, [6] * 10, [6]]
    assert filter_long(src, tgt, max_len=4) == ([0, 4], [1, 2, 3])  # 3 tokens + EOS fit, 4 do not
    assert filter_long(src, tgt, max_len=11) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(UserError, match="max_len"):
        filter_long(src, tgt, max_len=1)
    with pytest.raises(UserError, match="differ in length"):
        filter_long(src, tgt[:-1], max_len=4)


# ----------------------------------------------------------------------------------- PairBatches


def _random_data(n: int, seed: int = 0, hi: int = 40) -> tuple[list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    ls = rng.integers(1, hi, n)
    lt = np.clip(ls + rng.integers(-5, 6, n), 1, None)  # targets about as long as their sources
    src = [rng.integers(4, 300, k).tolist() for k in ls]
    tgt = [rng.integers(4, 300, k).tolist() for k in lt]
    return src, tgt


def _check_epoch(loader: PairBatches, src, tgt, batches, max_tokens: int) -> list[int]:
    """Every row is its example + EOS, padded with PAD; batches respect the budget. Returns the indices."""
    seen = []
    for s, t, idx in batches:
        assert s.dtype == t.dtype == idx.dtype == torch.int64
        B = len(idx)
        assert s.shape[0] == t.shape[0] == B >= 1
        assert B == 1 or B * max(s.shape[1], t.shape[1]) <= max_tokens
        ls = [len(src[i]) + 1 for i in idx.tolist()]
        lt = [len(tgt[i]) + 1 for i in idx.tolist()]
        assert s.shape[1] == max(ls) and t.shape[1] == max(lt)  # no all-PAD columns
        for r, i in enumerate(idx.tolist()):
            assert s[r].tolist() == src[i] + [EOS] + [PAD] * (s.shape[1] - len(src[i]) - 1)
            assert t[r].tolist() == tgt[i] + [EOS] + [PAD] * (t.shape[1] - len(tgt[i]) - 1)
        seen += idx.tolist()
    return seen


def test_pair_batches_every_example_once_padded_and_within_budget() -> None:
    src, tgt = _random_data(500)
    loader = PairBatches(src, tgt, 256, shuffle=True, seed=3)
    for epoch in (0, 1):
        batches = list(loader.batches(epoch))
        assert len(batches) == len(loader)
        assert sorted(_check_epoch(loader, src, tgt, batches, 256)) == list(range(500))
    assert loader.tokens == sum(len(t) + 1 for t in tgt)


def test_pair_batches_are_length_sorted_and_cut_greedily() -> None:
    src, tgt = _random_data(400, seed=1)
    loader = PairBatches(src, tgt, 300, shuffle=False)
    batches = list(loader.batches(0))
    width = [max(s.shape[1], t.shape[1]) for s, t, _ in batches]
    assert width == sorted(width)  # in length order without shuffle
    for (s, t, idx), (_, _, idx2) in itertools.pairwise(batches):
        # greedy: the next batch's first example would not have fit into this batch
        i = int(idx2[0])
        w = max(s.shape[1], t.shape[1], len(src[i]) + 1, len(tgt[i]) + 1)
        assert (len(idx) + 1) * w > 300


def test_pair_batches_max_sentences_and_oversized_example() -> None:
    src, tgt = _random_data(200, seed=2, hi=10)
    src.append([7] * 50)  # 51 tokens with EOS > max_tokens: a batch of its own
    tgt.append([8] * 3)
    loader = PairBatches(src, tgt, 40, shuffle=False, max_sentences=3)
    batches = list(loader.batches())
    assert all(len(idx) <= 3 for _, _, idx in batches)
    (alone,) = [b for b in batches if 200 in b[2].tolist()]
    assert alone[2].tolist() == [200] and alone[0].shape == (1, 51)
    assert sorted(_check_epoch(loader, src, tgt, batches, 40)) == list(range(201))


def test_pair_batches_epoch_order_is_seeded() -> None:
    src, tgt = _random_data(300)
    a = PairBatches(src, tgt, 200, shuffle=True, seed=0)
    b = PairBatches(src, tgt, 200, shuffle=True, seed=0)

    def ids(loader: PairBatches, epoch: int) -> list[list[int]]:
        return [idx.tolist() for _, _, idx in loader.batches(epoch)]

    assert ids(a, 0) == ids(b, 0) and ids(a, 5) == ids(b, 5)
    assert ids(a, 0) != ids(a, 1)
    assert sorted(map(tuple, ids(a, 0))) == sorted(map(tuple, ids(a, 1)))  # the same batches, another order
    assert ids(PairBatches(src, tgt, 200, shuffle=True, seed=1), 0) != ids(a, 0)
    fixed = PairBatches(src, tgt, 200, shuffle=False)
    assert ids(fixed, 0) == ids(fixed, 1)


def test_pair_batches_start_resumes_exactly() -> None:
    src, tgt = _random_data(300)
    loader = PairBatches(src, tgt, 200, shuffle=True, seed=4)
    full = list(loader.batches(2))
    for k in (0, 1, 7, len(loader) - 1, len(loader)):
        rest = list(loader.batches(2, start=k))
        assert len(rest) == len(full) - k
        assert all(torch.equal(x, y) for a, b in zip(rest, full[k:]) for x, y in zip(a, b))


@pytest.mark.parametrize("world", [2, 3])
def test_pair_batches_shards_are_disjoint_and_cover(world: int) -> None:
    src, tgt = _random_data(300)
    loader = PairBatches(src, tgt, 200, shuffle=True, seed=5)
    n = len(loader)
    shards = [loader.shard(r, world) for r in range(world)]
    assert all(len(s) == n // world for s in shards) and len(loader) == n  # the original is unchanged
    for epoch in (0, 1):
        global_order = [tuple(idx.tolist()) for _, _, idx in loader.batches(epoch)]
        parts = [[tuple(idx.tolist()) for _, _, idx in s.batches(epoch)] for s in shards]
        for r, part in enumerate(parts):
            assert part == global_order[r::world][:n // world]
        flat = [i for part in parts for b in part for i in b]
        assert len(flat) == len(set(flat))  # disjoint
        assert set(flat) == {i for b in global_order[:world * (n // world)] for i in b}  # covering
    with pytest.raises(UserError, match="processes"):
        PairBatches(src[:3], tgt[:3], 10_000, shuffle=False).shard(0, 2)
    with pytest.raises(UserError, match="rank"):
        loader.shard(world, world)


def test_pair_batches_padding_fraction_is_measured_and_beats_random_batching() -> None:
    src, tgt = _random_data(600)
    loader = PairBatches(src, tgt, 400, shuffle=True)
    pad = total = 0
    for s, t, _ in loader.batches(0):
        pad += int((s == PAD).sum() + (t == PAD).sum())  # ids are >= 4, so PAD is padding
        total += s.numel() + t.numel()
    assert loader.padding_fraction == pytest.approx(pad / total)
    # random batches of the same data with the same number of batches
    rng = np.random.default_rng(0)
    pad = total = 0
    for part in np.array_split(rng.permutation(len(src)), len(loader)):
        S = max(len(src[i]) + 1 for i in part)
        T = max(len(tgt[i]) + 1 for i in part)
        total += len(part) * (S + T)
        pad += sum(S - len(src[i]) - 1 + T - len(tgt[i]) - 1 for i in part)
    assert loader.padding_fraction < 0.5 * (pad / total)


def test_pair_batches_on_tokenized_text(tok: Tokenizer, corpus) -> None:
    en, fr = [s for s, _ in corpus["train"]], [t for _, t in corpus["train"]]
    src, tgt = tok.encode(en), tok.encode(fr)
    loader = PairBatches(src, tgt, 1024, shuffle=True)
    assert loader.padding_fraction < 0.25
    s, t, idx = next(loader.batches(0))
    assert tok.decode(s) == [en[i] for i in idx.tolist()]
    assert tok.decode(t) == [fr[i] for i in idx.tolist()]


def test_pair_batches_validates_arguments() -> None:
    src, tgt = _random_data(10)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="max_tokens"):
            PairBatches(src, tgt, bad, shuffle=False)
    with pytest.raises(UserError, match="no sentence pairs"):
        PairBatches([], [], 100, shuffle=False)
    with pytest.raises(UserError, match="differ in length"):
        PairBatches(src, tgt[:-1], 100, shuffle=False)
    with pytest.raises(UserError, match="max_sentences"):
        PairBatches(src, tgt, 100, shuffle=False, max_sentences=0)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=60),
    max_tokens=st.integers(1, 200),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**16),
    epoch=st.integers(0, 3),
)
def test_pair_batches_property(lengths, max_tokens: int, shuffle: bool, seed: int, epoch: int) -> None:
    src = [[4 + (i + j) % 50 for j in range(a)] for i, (a, _) in enumerate(lengths)]
    tgt = [[5 + (i * j) % 50 for j in range(b)] for i, (_, b) in enumerate(lengths)]
    loader = PairBatches(src, tgt, max_tokens, shuffle=shuffle, seed=seed)
    batches = list(loader.batches(epoch))
    assert len(batches) == len(loader)
    assert sorted(_check_epoch(loader, src, tgt, batches, max_tokens)) == list(range(len(src)))
    assert 0.0 <= loader.padding_fraction < 1.0
    assert loader.tokens == sum(b for _, b in lengths) + len(lengths)
