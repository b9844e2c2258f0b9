"""docs/lecture.md stays true: a row for every item of LECTURE.md, and every test and file it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE_MD = ROOT.parent / "shared" / "LECTURE.md"
DOC = (ROOT / "docs" / "lecture.md").read_text()
ROWS = [line for line in DOC.splitlines() if re.match(r"\| [CRTF]\d+", line)]
NOT_YET: set[str] = set()


def _items() -> set[str]:
    if not LECTURE_MD.is_file():
        pytest.skip(f"{LECTURE_MD} is not here (the workplace's shared folder)")
    return set(re.findall(r"^- ([CRTF]\d+) ", LECTURE_MD.read_text(), flags=re.M))


def test_every_lecture_item_has_a_row() -> None:
    items = _items()
    assert len(items) == 33
    rows = {re.match(r"\| ([CRTF]\d+)", row).group(1) for row in ROWS}
    assert items - rows == NOT_YET, f"items without a row in docs/lecture.md: {sorted(items - rows - NOT_YET)}"


def _test_references() -> list[tuple[str, str]]:
    """(file, test name prefix) for every ``test_x.py::name`` and the ``::name`` that follow it in a cell."""
    refs = []
    for row in ROWS:
        for cell in row.split(" | "):
            current = None
            for file, name in re.findall(r"(test_\w+\.py)?::(\w+)", cell):
                current = file or current
                if current:
                    refs.append((current, name))
    return refs


def test_every_named_test_exists() -> None:
    refs = _test_references()
    assert len(refs) > 80
    missing = []
    for file, name in refs:
        path = ROOT / "tests" / file
        if not path.is_file() or not re.search(rf"^def {name}", path.read_text(), flags=re.M):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/lecture.md names tests that do not exist: {missing}"


def test_every_named_file_exists() -> None:
    files = set(re.findall(r"`(deepnn/[\w/]+\.py)", DOC))
    assert files
    assert not [f for f in files if not (ROOT / f).is_file()]
