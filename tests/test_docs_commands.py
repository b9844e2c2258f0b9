"""Every ``deepnn`` command the docs show is a real command, and every picture the docs show has a command.

What counts as a command: each line of a fenced or indented code block, and each inline code span, of
README.md and docs/**/*.md that starts with ``deepnn``, ``python -m deepnn`` or ``torchrun ... -m deepnn``
(lines ending in ``\\`` joined with the next; ``# comments`` and anything after a ``|``, ``>``, ``;`` or
``&&`` dropped). Substitution rules, so a documented command can be checked as it is written:

* ``<anything>`` (``runs/<run>/``, ``<lstm run>``) is one placeholder argument, replaced by ``X``;
  capitals (``RUN``, ``DIR``, ``FILE``) and ``...`` are arguments argparse takes as they are;
* ``deepnn ...`` and ``deepnn <command> --help`` are patterns, not commands (``PATTERNS``);
* a span whose first word ends in ``:`` is a quoted message (``deepnn chart: error: ...``), not a command.

Checks: every command parses with the CLI's own parser (subcommands, flags, choices and types are real),
every ``deepnn train`` command's settings resolve (model, recipe, ``--set`` keys and values, as
``deepnn train`` checks them before it starts); a chosen set of quick commands runs end to end
(``REAL_RUNS``), output paths moved into a temporary folder and long commands in a fast mode
(``deepnn train`` for one epoch on 1,000 images); every picture the docs show, and every file of
docs/img/, is written by a documented command (its output argument names the picture's path), the cheap
ones of these run, and their picture has the committed picture's shape.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from deepnn.cli import build_parser, main
from deepnn.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PATTERNS = {"deepnn ...", "deepnn <command> --help"}
START = re.compile(r"^(?:\$ )?(?:python3? -m |torchrun\b[^#]*?\s-m )?(deepnn(?:\s.*)?)$")
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "&", "<", "2>"}
OUTPUT_FLAGS = {"-o", "--output", "--out", "--confusion-png", "--curves-png"}
NUMBERS = {"N"}  # `--seed N`: a number; so is a `{name}` template field (docs/results.md)
INPUTS = {"docs/img/astronaut.png": "photograph", "docs/img/sneaker.png": "Fashion-MNIST test image 9"}


def _command(code: str) -> str | None:
    """The ``deepnn ...`` command in a line or span of code, or None."""
    m = START.match(code.strip())
    return m.group(1).strip() if m else None


def doc_commands() -> list[tuple[str, str]]:
    """``(where, command)`` for every command in the docs (``where`` is ``file:line``)."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        name = doc.relative_to(ROOT).as_posix()
        in_fence, paragraph, start = False, [], 0
        i = 0
        while i <= len(lines):
            line = lines[i] if i < len(lines) else ""
            code_line = in_fence or (line.startswith("    ") and not paragraph)
            if line.lstrip().startswith("```") or code_line or not line.strip() or i == len(lines):
                text = " ".join(paragraph)  # inline spans may break across lines
                for span in re.findall(r"`([^`]+)`", text):
                    if (cmd := _command(span)) is not None:
                        found.append((f"{name}:{start + 1}", cmd))
                paragraph = []
            if i == len(lines):
                break
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
            elif code_line:
                j, code = i, line.strip()
                while code.endswith("\\") and j + 1 < len(lines):
                    j += 1
                    code = code[:-1] + " " + lines[j].strip()
                if (cmd := _command(code)) is not None:
                    found.append((f"{name}:{i + 1}", cmd))
                i = j
            elif line.strip():
                if not paragraph:
                    start = i
                paragraph.append(line)
            i += 1
    return found


def to_argv(command: str) -> list[str] | None:
    """The arguments after ``deepnn`` under the substitution rules; None for a pattern or a message."""
    if re.sub(r"\s+#.*", "", command) in PATTERNS:
        return None
    lexer = shlex.shlex(re.sub(r"<[^<>]*>", "X", command), posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    argv = []
    for token in lexer:
        if token in SHELL_STOP:
            break
        argv.append("0" if token in NUMBERS or re.fullmatch(r"\{\w+\}", token) else token)
    if len(argv) > 1 and argv[1].endswith(":"):
        return None
    if len(argv) > 2 and argv[-1] == "..." and not argv[-2].startswith("-"):
        argv.pop()  # `deepnn sample RUN ...`: and more arguments
    return argv[1:]


def is_reference(argv: list[str]) -> bool:
    """A subcommand alone or with flags and no values (`deepnn train`, `deepnn gradflow --runs`) names them."""
    return all(a.startswith("-") for a in argv[1:])


def subparsers() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


COMMANDS = doc_commands()


def parse(argv: list[str]):
    """The CLI's parse of ``argv``; a parse error fails with argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code:
            pytest.fail(f"deepnn {shlex.join(argv)}: {err.getvalue().strip()}")
        return None  # --help


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 100
    subcommands = {to_argv(c)[0] for _, c in COMMANDS if to_argv(c)}
    from deepnn.cli import COMMANDS as CLI

    assert subcommands == set(CLI), f"commands the docs never show: {set(CLI) - subcommands}"


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where: str, command: str) -> None:
    argv = to_argv(command)
    if argv is None or argv == []:  # `deepnn` alone: the program
        return
    if is_reference(argv):
        sub = subparsers()
        assert argv[0] in sub, f"{where}: no command {argv[0]!r}"
        options = set(sub[argv[0]]._option_string_actions)
        assert set(argv[1:]) <= options, f"{where}: deepnn {argv[0]} has no option {set(argv[1:]) - options}"
        return
    args = parse(argv)
    if args is not None and args.command == "train" and "X" not in args.model and args.model != "MODEL":
        from deepnn.cli.train import resolve_config

        prev = Path.cwd()
        os.chdir(ROOT)
        try:
            resolve_config(args)  # model, recipe, --config and --set resolve as `deepnn train` checks them
        except UserError as e:
            pytest.fail(f"{where}: {command}: {e}")
        finally:
            os.chdir(prev)


# --- commands run for real --------------------------------------------------------------------------

FAST_TRAIN = ["--epochs", "1", "--set", "data.train_subset=1000", "--no-progress"]  # `deepnn train`, fast mode
TRAINED = {  # documented training command -> the run folders the docs name for what it trains
    "deepnn train lenet --out /tmp/lenet-run --threads 1": ("/tmp/lenet-run", "RUN"),
    "deepnn train lenet_modern --out /tmp/modern-run --threads 1": ("/tmp/modern-run", "runs/modern/"),
}
REAL_RUNS = [  # quick documented commands, run end to end (outputs into a temporary folder)
    "deepnn models",
    'deepnn models "lenet*"',
    "deepnn models --task language_model",
    "deepnn summary lenet",
    "deepnn summary alexnet --input 3x220x220 --compare lenet",
    "deepnn summary inception-block --in 192x28x28 --out 256",
    "deepnn summary resnet18 --input 1x28x28",
    "deepnn kernels --learn",
    "deepnn kernels --index 0 -o kernels.png",
    "deepnn kernels docs/img/astronaut.png -o kernels.png",
    "deepnn eval RUN",
    "deepnn eval runs/modern/ --confusion-png cm.png --curves-png curves.png",
]
# pictures whose command is cheap: run it, and compare with the committed picture
CHEAP_PICTURES = [
    "docs/img/kernels-astronaut.jpg", "docs/img/gradflow.png", "docs/img/nas-t40.png", "docs/chart.png",
    "docs/img/features-lenet.png", "docs/img/filters-lenet.png", "docs/img/features-lenet_modern.png",
    "docs/img/confusion-lenet.png", "docs/img/curves-lenet.png",
]


def _argv_of(command: str) -> list[str]:
    for _, c in COMMANDS:
        if to_argv(c) == to_argv(command):
            return to_argv(c)
    raise AssertionError(f"{command!r} is not in the docs any more; update this test's lists")


@pytest.fixture(scope="module")
def fashion() -> None:
    from deepnn.data import fashion_mnist

    try:
        fashion_mnist.locate(allow_download=False)
    except Exception:  # noqa: BLE001 - whatever says the files are not here
        pytest.skip("Fashion-MNIST files not available")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, fashion: None) -> dict[str, str]:
    """Run folder names in the docs -> tiny runs of the documented training commands (fast mode)."""
    folders = {}
    for command, names in TRAINED.items():
        argv = _argv_of(command)
        out = tmp_path_factory.mktemp("runs") / Path(argv[argv.index("--out") + 1]).name
        argv[argv.index("--out") + 1] = str(out)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(argv + FAST_TRAIN) == 0, command
        folders.update({name: str(out) for name in names})
    return folders


def runnable(argv: list[str], tmp: Path, runs: dict[str, str]) -> list[str]:
    """``argv`` with output paths moved into ``tmp``, documented run folders replaced by ``runs`` and
    shell patterns (``results/cpu/lenet-s*``) expanded from the repository root."""
    out = []
    for i, a in enumerate(argv):
        if i and argv[i - 1] in OUTPUT_FLAGS and ("/" in a or Path(a).suffix):
            out.append(str(tmp / Path(a).name))
        elif a in runs:
            out.append(runs[a])
        elif "*" in a and "/" in a:  # a shell pattern of paths (`deepnn models "lenet*"` is the CLI's own)
            matches = sorted(glob.glob(a, root_dir=ROOT))
            assert matches, f"{a} matches nothing in the repository"
            out.extend(matches)
        else:
            out.append(a)
    return out


def run_in_root(argv: list[str]) -> tuple[int, str]:
    prev, stdout = Path.cwd(), io.StringIO()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout):
            return main(argv), stdout.getvalue()
    finally:
        os.chdir(prev)


def _runs_if_needed(argv: list[str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The tiny runs when ``argv`` names a run folder (trained once, on first need), else none."""
    if argv[0] == "kernels" and "--index" in argv:
        request.getfixturevalue("fashion")  # a Fashion-MNIST test image
    names = {name for names in TRAINED.values() for name in names}
    return request.getfixturevalue("runs") if names & set(argv) else {}


@pytest.mark.parametrize("command", REAL_RUNS)
def test_quick_commands_run(command: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    argv = _argv_of(command)
    argv = runnable(argv, tmp_path, _runs_if_needed(argv, request))
    rc, out = run_in_root(argv)
    assert rc == 0, f"{command}: exit status {rc}\n{out}"
    assert out.strip(), f"{command} printed nothing"
    for a in argv:
        if a.startswith(str(tmp_path)):
            assert Path(a).stat().st_size > 0, f"{command} did not write {a}"


# --- pictures ----------------------------------------------------------------------------------------

def doc_pictures() -> dict[str, list[str]]:
    """Repository path of every picture the docs show (``![...](path)``) -> the docs that show it."""
    shown: dict[str, list[str]] = {}
    for doc in DOCS:
        for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", doc.read_text()):
            path = os.path.relpath((doc.parent / link).resolve(), ROOT)
            shown.setdefault(Path(path).as_posix(), []).append(doc.relative_to(ROOT).as_posix())
    return shown


PICTURES = sorted(set(doc_pictures()) | {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "img").iterdir()
                                         if p.name != "SOURCES.md"})


def writers(picture: str) -> list[list[str]]:
    """The documented commands whose output argument is ``picture``."""
    found = []
    for _, command in COMMANDS:
        argv = to_argv(command)
        if argv and any(argv[i - 1] in OUTPUT_FLAGS and a == picture for i, a in enumerate(argv) if i):
            found.append(argv)
    return found


def test_pictures_exist_and_are_listed() -> None:
    shown = doc_pictures()
    assert len(shown) >= 10
    assert not [p for p in shown if not (ROOT / p).is_file()], "pictures the docs show that do not exist"
    sources = (ROOT / "docs" / "img" / "SOURCES.md").read_text()
    assert not [p for p in PICTURES if p.startswith("docs/img/") and f"`{Path(p).name}`" not in sources], \
        "files of docs/img/ that docs/img/SOURCES.md does not list"


@pytest.mark.parametrize("picture", PICTURES)
def test_every_picture_has_its_command(picture: str) -> None:
    if picture in INPUTS:  # an input: some documented command reads it
        assert any(picture in (to_argv(c) or []) for _, c in COMMANDS), f"no documented command reads {picture}"
        return
    assert writers(picture), f"no command in the docs writes {picture} (an output argument naming it)"


@pytest.mark.parametrize("picture", CHEAP_PICTURES)
def test_cheap_pictures_are_regenerated(picture: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from PIL import Image

    argv = writers(picture)[0]
    argv = runnable(argv, tmp_path, _runs_if_needed(argv, request))
    rc, out = run_in_root(argv)
    assert rc == 0, out
    with Image.open(ROOT / picture) as committed, Image.open(tmp_path / Path(picture).name) as drawn:
        assert drawn.format == committed.format
        # the same figure: same aspect ratio (a picture drawn at another dpi still counts)
        assert drawn.width / drawn.height == pytest.approx(committed.width / committed.height, rel=0.01)
