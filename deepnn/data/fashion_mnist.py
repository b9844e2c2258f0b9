"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70k 28×28 grey images of 10 clothing classes.

Where the files are looked for, in this order (the first folder holding all four wins):

1. an explicit ``data_dir`` (``deepnn train --data-dir``),
2. ``$DEEPNN_DATA`` (the folder itself or its ``fashion-mnist/`` subfolder),
3. the user cache ``$XDG_CACHE_HOME/deepnn/fashion-mnist`` (default ``~/.cache/deepnn/...``),
4. Debian's ``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist``,
5. a download from the official mirror into the user cache, checksum-verified, written
   atomically (temporary file, then rename) so nothing half-written is ever left there.

Files may be the official ``.gz`` files or decompressed. A file is accepted when the MD5 of
its bytes matches the official ``.gz`` digest or the MD5 of its decompressed content matches
the content digest (Debian recompressed the archives, so only the content digest holds there).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from .idx import parse_idx, read_bytes

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # of the 60k training images, scaled to [0, 1]
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class _File:
    stem: str  # e.g. "train-images-idx3-ubyte"
    gz_md5: str  # official .gz digest (github.com/zalandoresearch/fashion-mnist)
    raw_md5: str  # digest of the decompressed IDX bytes
    count: int


FILES = {
    ("train", "images"): _File("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                               "f4a8712d7a061bf5bd6d2ca38dc4d50a", 60000),
    ("train", "labels"): _File("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe",
                               "9018921c3c673c538a1fc5bad174d6f9", 60000),
    ("test", "images"): _File("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79",
                              "8181f5470baa50b63fa0f6fddb340f0a", 10000),
    ("test", "labels"): _File("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310",
                              "15d484375f8d13e6eb1aabb0c3f46965", 10000),
}


def cache_dir() -> Path:
    """The user cache folder for Fashion-MNIST."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepnn" / "fashion-mnist"


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched, in order (see the module docstring)."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    if os.environ.get("DEEPNN_DATA"):
        env = Path(os.environ["DEEPNN_DATA"])
        dirs += [env, env / "fashion-mnist"]
    dirs += [cache_dir(), DEBIAN_DIR]
    return dirs


def _find(folder: Path, f: _File) -> Path | None:
    for name in (f.stem + ".gz", f.stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _verified(path: Path, f: _File) -> bytes:
    """Decompressed bytes of ``path`` after checking either digest; raises on mismatch."""
    raw = path.read_bytes()
    if hashlib.md5(raw).hexdigest() == f.gz_md5:
        return read_bytes(path)
    content = read_bytes(path)
    if hashlib.md5(content).hexdigest() != f.raw_md5:
        raise UserError(
            f"{path} fails its checksum (neither the official .gz MD5 {f.gz_md5} nor the content MD5 "
            f"{f.raw_md5}); the file is corrupt: delete it so it is fetched again"
        )
    return content


def download(dest: Path, mirror: str | None = None) -> None:
    """Fetch the four files into ``dest`` (from ``mirror``, default :data:`MIRROR`), verified, atomically."""
    mirror = mirror or MIRROR
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES.values():
        target = dest / (f.stem + ".gz")
        if target.is_file():
            continue
        url = mirror + f.stem + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except OSError as e:
            raise UserError(f"could not download {url} ({e})") from None
        if hashlib.md5(data).hexdigest() != f.gz_md5:
            raise UserError(f"downloaded {url} but its MD5 does not match {f.gz_md5}; try again later")
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=target.name, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)


def locate(data_dir: str | Path | None = None, *, allow_download: bool = True) -> Path:
    """The first folder holding all four files; downloads into the cache when none does."""
    tried = candidate_dirs(data_dir)
    for folder in tried:
        if all(_find(folder, f) for f in FILES.values()):
            return folder
    if allow_download and os.environ.get("DEEPNN_OFFLINE") != "1":
        try:
            download(cache_dir())
            return cache_dir()
        except UserError as e:
            reason = str(e)
    else:
        reason = "downloads are disabled"
    places = ", ".join(str(d) for d in dict.fromkeys(tried))
    raise UserError(
        f"Fashion-MNIST not found (looked in {places}) and {reason}. Fix: pass --data-dir or set DEEPNN_DATA "
        f"to a folder with the four IDX files, or `apt install dataset-fashion-mnist`, or allow the download "
        f"from {MIRROR}"
    )


def load_split(split: str, data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of the official ``"train"`` (60k) or ``"test"`` (10k) split.

    Returns:
        ``images``: uint8 ``(N, 28, 28)``; ``labels``: int64 ``(N,)`` in ``0..9``.
    """
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    folder = locate(data_dir)
    out = []
    for kind in ("images", "labels"):
        f = FILES[(split, kind)]
        path = _find(folder, f)
        assert path is not None  # locate() checked
        t = parse_idx(_verified(path, f), str(path))
        if t.shape[0] != f.count:
            raise UserError(f"{path} holds {t.shape[0]} items, expected {f.count}; the file is corrupt")
        out.append(t)
    images, labels = out
    return images, labels.long()
