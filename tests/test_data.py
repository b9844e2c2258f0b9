"""Fashion-MNIST: IDX parsing, checksums, the search order, downloads, splits, the tensor loader."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import pytest
import torch

from deepnn.data import TensorLoader, fashion_mnist, normalize
from deepnn.data.idx import parse_idx, read_bytes
from deepnn.errors import UserError


def idx_bytes(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def test_parse_idx_small_generated_file(tmp_path: Path) -> None:
    images = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "x").write_bytes(idx_bytes(images))
    for name in ("x.gz", "x"):
        out = parse_idx(read_bytes(tmp_path / name), name)
        assert out.dtype == torch.uint8 and out.shape == (2, 3, 4)
        assert torch.equal(out.long(), images)


@pytest.mark.parametrize(
    "data, message",
    [(b"\x01\x02\x08\x01", "bad magic"), (bytes([0, 0, 8, 2, 0, 0]), "incomplete IDX header"),
     (idx_bytes(torch.zeros(5, dtype=torch.uint8))[:-2], "truncated or corrupt")],
)
def test_parse_idx_rejects_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_idx(data, "f")


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(torch.zeros(100, dtype=torch.uint8)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="corrupt or truncated gzip"):
        read_bytes(tmp_path / "t.gz")


def test_real_test_split(fashion_dir: Path) -> None:
    images, labels = fashion_mnist.load_split("test", fashion_dir)
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))


def copy_dataset(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if "idx" in f.name:
            shutil.copy(f, dst / f.name)
    return dst


def test_checksum_failure_names_the_file(tmp_path: Path, fashion_dir: Path) -> None:
    bad = copy_dataset(fashion_dir, tmp_path / "bad")
    labels = bad / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(read_bytes(labels))
    content[-1] = (content[-1] + 1) % 10  # one wrong label: still a valid IDX file
    labels.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz fails its checksum"):
        fashion_mnist.load_split("test", bad)


def test_decompressed_files_are_accepted(tmp_path: Path, fashion_dir: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in fashion_dir.iterdir():
        if f.name.endswith(".gz"):
            (plain / f.name[:-3]).write_bytes(read_bytes(f))
    images, _ = fashion_mnist.load_split("test", plain)
    assert images.shape == (10000, 28, 28)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DEEPNN_DATA, an empty cache and no Debian folder: only what a test adds."""
    monkeypatch.delenv("DEEPNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


def test_missing_files_say_what_was_tried(isolated: Path) -> None:
    with pytest.raises(UserError) as e:
        fashion_mnist.locate(isolated / "nowhere", allow_download=False)
    msg = str(e.value)
    assert "nowhere" in msg and "cache" in msg and "debian" in msg and "DEEPNN_DATA" in msg


def test_search_order(isolated: Path, fashion_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = copy_dataset(fashion_dir, isolated / "explicit")
    env = copy_dataset(fashion_dir, isolated / "env" / "fashion-mnist")
    debian = copy_dataset(fashion_dir, isolated / "debian")
    assert fashion_mnist.locate(allow_download=False) == debian
    cache = copy_dataset(fashion_dir, fashion_mnist.cache_dir())
    assert fashion_mnist.locate(allow_download=False) == cache
    monkeypatch.setenv("DEEPNN_DATA", str(isolated / "env"))
    assert fashion_mnist.locate(allow_download=False) == env
    assert fashion_mnist.locate(explicit, allow_download=False) == explicit


def fake_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: str | None = None) -> str:
    """A file:// mirror of tiny IDX files, with the registry's digests patched to match."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for key, f in fashion_mnist.FILES.items():
        arr = torch.zeros(3, 28, 28) if key[1] == "images" else torch.zeros(3)
        blob = gzip.compress(idx_bytes(arr))
        digest = hashlib.md5(blob).hexdigest()
        raw = hashlib.md5(idx_bytes(arr)).hexdigest()
        monkeypatch.setitem(fashion_mnist.FILES, key, fashion_mnist._File(f.stem, digest, raw, 3))
        (mirror / (f.stem + ".gz")).write_bytes(b"garbage" if f.stem == corrupt else blob)
    return mirror.as_uri() + "/"


def test_download_verifies_and_writes_atomically(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fake_mirror(isolated, monkeypatch)
    monkeypatch.setattr(fashion_mnist, "MIRROR", url)
    monkeypatch.delenv("DEEPNN_OFFLINE")
    images, labels = fashion_mnist.load_split("train")
    assert images.shape == (3, 28, 28) and labels.shape == (3,)
    assert sorted(p.name for p in fashion_mnist.cache_dir().iterdir()) == sorted(
        f.stem + ".gz" for f in fashion_mnist.FILES.values())


def test_download_with_bad_checksum_leaves_nothing(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fake_mirror(isolated, monkeypatch, corrupt="train-images-idx3-ubyte")
    monkeypatch.setattr(fashion_mnist, "MIRROR", url)
    monkeypatch.delenv("DEEPNN_OFFLINE")
    with pytest.raises(UserError, match="MD5 does not match"):
        fashion_mnist.locate()
    assert not (fashion_mnist.cache_dir() / "train-images-idx3-ubyte.gz").exists()
    assert not list(fashion_mnist.cache_dir().glob("*.part"))


def test_validation_split_is_seeded_and_disjoint(fmnist) -> None:
    from deepnn.data import load_image_data

    assert len(fmnist.train[0]) == 55000 and len(fmnist.val[0]) == 5000 and len(fmnist.test[0]) == 10000
    again = load_image_data(val_size=5000, seed=0)
    assert torch.equal(again.val[1], fmnist.val[1])
    other = load_image_data(val_size=5000, seed=1)
    assert not torch.equal(other.val[1], fmnist.val[1])
    assert abs(float(fmnist.train[0].mean())) < 0.01 and abs(float(fmnist.train[0].std()) - 1) < 0.01


def test_normalize_shapes() -> None:
    x = normalize(torch.full((2, 28, 28), 255, dtype=torch.uint8), 0.5, 0.5)
    assert x.shape == (2, 28, 28) and torch.allclose(x, torch.ones(()))


def test_tensor_loader_orders_depend_on_seed_and_epoch_only() -> None:
    x, y = torch.arange(10).float(), torch.arange(10)
    loader = TensorLoader(x, y, batch_size=3, shuffle=True, seed=5, drop_last=True)
    assert len(loader) == 3
    epoch1 = [b[1].tolist() for b in loader.batches(1)]
    assert epoch1 == [b[1].tolist() for b in TensorLoader(x, y, 3, shuffle=True, seed=5, drop_last=True).batches(1)]
    assert epoch1[1:] == [b[1].tolist() for b in loader.batches(1, start=1)]
    assert epoch1 != [b[1].tolist() for b in loader.batches(2)]
    assert len(TensorLoader(x, y, 3)) == 4
    with pytest.raises(ValueError, match="10 examples but y has 9"):
        TensorLoader(x, y[:9], 3)
