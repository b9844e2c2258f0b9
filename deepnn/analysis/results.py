"""The results tables: training runs grouped by recipe, the test score as mean ± std over seeds.

Image classifiers are scored by test accuracy, language models by test loss (nats per character,
lower is better); each task gets its own table.

Each run folder of ``deepnn train`` holds ``results.json`` (read and checked by
:mod:`deepnn.analysis.chart`'s reader) and ``config.yaml``, the resolved config. Runs are one
row when they trained the same model with the same config apart from the settings that
differ between the seeds of one recipe (:data:`PER_RUN`: the seed, the progress bar, the data
folder); a run without ``config.yaml`` is grouped by its command instead. Numbers are reported
as airbench does: mean ± sample standard deviation over seeds, with the seeds and the exact
command (its seed shown as ``{seed}``).

Every number comes from the run files themselves:

* examples/s (tokens/s) is the units trained ÷ the training time, summed over ``metrics.jsonl``:
  Σ (rate × time) ÷ Σ time over its records (:func:`run_rate`). Each record's rate is its own units ÷
  its own time, so this is exact for every version of the files (a run interrupted and resumed leaves
  out the unrecorded stretch before the interruption, in both sums); ``results.json``'s own field is only
  read for a run without ``metrics.jsonl`` (older files, such as those in ``results/``, averaged the
  per-epoch rates, which overstates throughput when epochs differ in speed).
* validation score: the last ``metrics.jsonl`` record's, i.e. of the weights the test split evaluated
  (the final weights, or their moving average), not the best epoch's (:func:`final_val`).
* runs at once: how many runs of the files read trained at the same time on the same machine, from each
  run's ``finished`` time and training time (:func:`runs_at_once`): a lower bound, since a run's
  interval [finished − training time, finished] leaves out its start-up and validation, and processes
  that left no results file are not seen.

    >>> command_template("deepnn train lenet --seed 3 --out runs/a --epochs 5")
    'deepnn train lenet --epochs 5 --seed {seed}'
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..train.config import Config, load_yaml
from .chart import DEFAULT_GLOB, read_result
from .summary import si

__all__ = ["GLANCE", "GLANCE_PAIRS", "PER_RUN", "ResultRow", "command_template", "config_drift", "final_val",
           "generated_block", "glance_markdown", "glance_rows", "group_results",
           "reproduce_markdown", "results_markdown", "run_rate", "runs_at_once", "update_generated"]

PER_RUN = ("train.seed", "train.progress", "data.data_dir")  # config keys that do not define the recipe
_DROPPED_FLAGS = ("--seed", "--out")  # flags whose value differs per run


SCORES = {"classification": "test_accuracy", "language_model": "test_loss", "seq2seq": "test_bleu"}  # row reports
RATES = {"classification": "examples_per_s", "language_model": "tokens_per_s", "seq2seq": "tokens_per_s"}
VALS = {"classification": "val_accuracy", "language_model": "val_loss", "seq2seq": "val_bleu"}  # metrics.jsonl key
HIGHER_IS_BETTER = {"classification": True, "language_model": False, "seq2seq": True}

# README's "Results at a glance": (label, command without --seed/--no-progress), one row per machine that ran
# it, sorted by test accuracy. The only list of published recipes; `deepnn results --glance` prints it.
GLANCE = (
    ("ResNet-18 (28×28)", "deepnn train resnet18 --recipe fast --epochs 30"),
    ("ResNet-18", "deepnn train resnet18 --recipe fast"),
    ("ResNet-18 ÷ 2", "deepnn train resnet18 --recipe sprint"),
    ("Inception-BN", "deepnn train inception_bn --recipe fast"),
    ("VGG-16-BN", "deepnn train vgg16_bn --recipe fast"),
    ("VGG-11-BN ÷ 4", "deepnn train vgg11_bn --recipe fast"),
    ("AlexNet", "deepnn train alexnet --recipe fast"),
    ("VGG-11 ÷ 4", "deepnn train vgg11 --recipe fast"),
    ("NiN", "deepnn train nin --recipe fast"),
    ("GoogLeNet", "deepnn train googlenet --recipe fast"),
    ("LeNet (modern)", "deepnn train lenet_modern --recipe fast"),
    ("LeNet (modern)", "deepnn train lenet_modern"),
    ("LeNet-5 (lecture)", "deepnn train lenet"),
    ("Highway (MLP)", "deepnn train highway --recipe fast"),
)
SHAKESPEARE = "../shared/data/shakespeare/shakespeare.txt"
# the language models' rows: test loss on the held-out end of Shakespeare after 10 minutes of training
GLANCE_TEXT = tuple((label, f"deepnn train {name} --text {SHAKESPEARE} --minutes 10 --threads 2")
                    for label, name in (("char LSTM", "char_lstm"), ("char GRU", "char_gru"),
                                        ("char RNN (tanh)", "char_rnn"), ("char Transformer", "char_transformer")))
PAIRS = "../shared/data/translation/en-fr"
# the translation models' rows: corpus BLEU on 2,000 held-out pairs after 20 minutes of training
GLANCE_PAIRS = tuple((label, f"deepnn train {name} --pairs {PAIRS}.train.tsv --valid {PAIRS}.valid.tsv --minutes 20 "
                             "--threads 2")
                     for label, name in (("Transformer", "transformer_mt"),
                                         ("RNN + additive attention", "seq2seq_attn")))


@dataclass(frozen=True)
class ResultRow:
    """The runs of one model and recipe."""

    model: str
    command: str  # how to reproduce one run, the seed as {seed}
    seeds: tuple[int, ...]
    scores: tuple[float, ...]  # the task's test score of each run: accuracy (fraction) or loss (nats/char)
    train_times: tuple[float, ...]  # seconds of training (validation excluded)
    rates: tuple[float, ...]  # examples/s or tokens/s: the task's units ÷ training time
    params: int
    flops: int | None  # forward FLOPs per example (FlopCounterMode: 1 multiply-add = 2 FLOPs)
    precision: str
    machines: tuple[str, ...]
    task: str = "classification"
    val_scores: tuple[float | None, ...] = ()  # the last validation of each run (the weights tested)
    at_once: tuple[int, ...] = ()  # runs of the files read training at the same time (lower bound), per run
    paths: tuple[str, ...] = ()  # each run's results.json

    @property
    def score(self) -> float:
        return statistics.mean(self.scores)

    @property
    def score_std(self) -> float:
        """Sample standard deviation over the runs (0 for a single run)."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


def command_template(command: str) -> str:
    """The command with ``--out`` dropped and the seed as ``--seed {seed}`` (appended if absent).

    A ``--resume`` command is returned unchanged: it cannot take a seed.
    """
    tokens = shlex.split(command)
    if "--resume" in tokens or any(t.startswith("--resume=") for t in tokens):
        return command
    kept: list[str] = []
    skip_value = False
    for tok in tokens:
        if skip_value:
            skip_value = False
            continue
        if tok in _DROPPED_FLAGS:
            skip_value = True
        elif not tok.startswith(tuple(f"{f}=" for f in _DROPPED_FLAGS)):
            kept.append(tok)
    for i in range(len(kept) - 1):  # --set train.seed=N counts as the seed too
        if kept[i] == "--set" and kept[i + 1].startswith("train.seed="):
            del kept[i : i + 2]
            break
    return shlex.join(kept) + " --seed {seed}"


def _machine(record: dict[str, Any]) -> str:
    m = record.get("machine") or {}
    if m.get("gpu"):
        return str(m["gpu"])
    threads = m.get("cpu_threads", "?")
    return f"{m.get('processor', '?')}, {threads} thread{'' if threads == 1 else 's'}"


def _recipe_key(path: Path, record: dict[str, Any]) -> str:
    """What makes two runs the same recipe: the config without :data:`PER_RUN` keys, else the command."""
    config_file = path.parent / "config.yaml"
    if not config_file.is_file():
        return "command:" + command_template(str(record.get("command", "")))
    config = load_yaml(config_file)
    for dotted in PER_RUN:
        section, key = dotted.split(".")
        if isinstance(config.get(section), dict):
            config[section].pop(key, None)
    return "config:" + json.dumps(config, sort_keys=True)


def _metrics(path: Path) -> list[dict[str, Any]]:
    """The records of the run's ``metrics.jsonl`` next to ``path`` (a torn last line is skipped)."""
    file = path.parent / "metrics.jsonl"
    records = []
    if file.is_file():
        for line in file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def run_rate(path: str | Path, record: dict[str, Any] | None = None) -> float:
    """Units (examples or tokens) trained ÷ training time: Σ rate × time ÷ Σ time over ``metrics.jsonl``.

    Each record holds the seconds of training since the previous record (``train_time``) and the rate
    over those seconds (``train_examples_per_s`` / ``train_tokens_per_s``), so rate × time is the units it
    trained on. Without metrics the ``results.json`` field is returned.
    """
    path = Path(path)
    record = record if record is not None else read_result(path)
    key = f"train_{RATES[record['task']]}"
    units = seconds = 0.0
    for m in _metrics(path):
        if isinstance(m.get(key), (int, float)) and isinstance(m.get("train_time"), (int, float)):
            units += m[key] * m["train_time"]
            seconds += m["train_time"]
    if seconds > 0:
        return units / seconds
    return float(record.get(RATES[record["task"]], 0.0))


def final_val(path: str | Path, record: dict[str, Any] | None = None) -> float | None:
    """The last validation score in ``metrics.jsonl``: of the weights the test evaluated (None: no metrics)."""
    path = Path(path)
    record = record if record is not None else read_result(path)
    vals = [m[VALS[record["task"]]] for m in _metrics(path) if isinstance(m.get(VALS[record["task"]]), (int, float))]
    return float(vals[-1]) if vals else None


def _interval(record: dict[str, Any]) -> tuple[str, float, float] | None:
    """(machine, start, end) of a run's training: [finished − train_time_s, finished], in seconds."""
    from datetime import datetime

    try:
        end = datetime.fromisoformat(str(record["finished"])).timestamp()
    except (KeyError, ValueError):
        return None
    m = record.get("machine") or {}
    return f"{m.get('gpu', '')}|{m.get('platform', m.get('processor', ''))}", end - float(
        record.get("train_time_s", 0.0)), end


def runs_at_once(records: Sequence[dict[str, Any]]) -> list[int]:
    """For each run, the most runs of ``records`` (itself included) that trained at one moment of its
    training on its machine: intervals [finished − train_time_s, finished] that overlap. 0: not known."""
    spans = [_interval(r) for r in records]
    out = []
    for span in spans:
        if span is None:
            out.append(0)
            continue
        machine, start, end = span
        same = [(s, e) for m, s, e in filter(None, spans) if m == machine and s < end and start < e]
        moments = [start] + [s for s, _ in same if start < s < end]
        out.append(max(sum(1 for s, e in same if s <= t < e) for t in moments))
    return out


def group_results(paths: Iterable[str | Path]) -> list[ResultRow]:
    """Read ``results.json`` files and group them into one :class:`ResultRow` per model, recipe and
    machine (a GPU's runs never share a row with a CPU's), sorted by task, model, then best score first."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    everything = []
    for path in map(Path, paths):
        record = read_result(path)
        record["_path"] = path
        record["_rate"], record["_val"] = run_rate(path, record), final_val(path, record)
        everything.append(record)
        key = (record["task"], record["model"], _recipe_key(path, record), _machine(record))
        groups.setdefault(key, []).append(record)
    for record, n in zip(everything, runs_at_once(everything)):
        record["_at_once"] = n
    rows = []
    for (_, model, _, _), records in groups.items():
        records.sort(key=lambda r: r.get("seed", 0))
        commands = [str(r.get("command", "")) for r in records]
        fresh = [c for c in commands if "--resume" not in c]  # a resumed run's command names no settings
        rows.append(ResultRow(
            model=model, command=command_template((fresh or commands)[0]),
            seeds=tuple(int(r.get("seed", 0)) for r in records),
            scores=tuple(float(r[SCORES[r["task"]]]) for r in records),
            train_times=tuple(float(r.get("train_time_s", 0.0)) for r in records),
            rates=tuple(r["_rate"] for r in records),
            params=int(records[0]["params"]),
            flops=int(records[0]["flops"]) if records[0].get("flops") is not None else None,
            precision=str(records[0].get("precision", "fp32")),
            machines=tuple(sorted({_machine(r) for r in records})), task=records[0]["task"],
            val_scores=tuple(r["_val"] for r in records), at_once=tuple(r["_at_once"] for r in records),
            paths=tuple(str(r["_path"]) for r in records),
        ))
    return sorted(rows, key=lambda r: (r.task, r.model, (-1 if HIGHER_IS_BETTER[r.task] else 1) * r.score))


def _mean_std(values: Sequence[float], scale: float, digits: int) -> str:
    text = f"{scale * statistics.mean(values):.{digits}f}"
    return text + (f" ± {scale * statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def _table(header: str, columns: str, rows: list[list[str]]) -> list[str]:
    lines = [header, "", "| " + " | ".join(columns.split(",")) + " |",
             "|" + "|".join("---:" if c.strip().startswith(("test", "train", "examples", "tokens", "params", "GFLOPs",
                                                               "bits", "val")) else "---" for c in columns.split(","))
             + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return lines


def _at_once(row: ResultRow) -> str:
    known = [n for n in row.at_once if n]
    if not known:
        return "?"
    return str(min(known)) if min(known) == max(known) else f"{min(known)}–{max(known)}"


def _vals(row: ResultRow, scale: float, digits: int) -> str:
    vals = [v for v in row.val_scores if v is not None]
    if len(vals) < len(row.val_scores) or not vals:
        return "?"
    return _mean_std(vals, scale, digits)


RATE_NOTE = ("{unit}/s: {unit} trained ÷ training time, from metrics.jsonl (Σ rate × seconds ÷ Σ seconds over its "
             "records; results.json's own field, an average of per-epoch rates in older files, is not "
             "used), mean over the runs.")
AT_ONCE_NOTE = ("At once: the most runs of these files that trained at the same time on the same machine during "
                "a run (intervals [finished − train time, finished] that overlap; a lower bound: start-up, "
                "validation and processes that left no results file are not counted).")


def results_markdown(rows: Sequence[ResultRow]) -> str:
    """Markdown tables of ``rows``, one per task, each with a line saying what its columns mean."""
    if not rows:
        raise UserError(f"no training results found (looked for {DEFAULT_GLOB}); train a model first, "
                        "e.g. `deepnn train lenet_modern`, or pass run folders or results.json files")
    common = lambda r: [f"{statistics.mean(r.train_times):.1f}", f"{statistics.mean(r.rates):.0f}",  # noqa: E731
                        si(r.params)]
    tables: list[list[str]] = []
    images = [r for r in rows if r.task == "classification"]
    if images:
        tables.append(_table(
            "Test accuracy in %: mean ± sample standard deviation over the seeds listed. Val accuracy: the last "
            "validation of each run (5,000 held-out training images, the weights the test evaluated), same "
            "statistics. Train time: seconds of training per run (validation excluded), mean. "
            + RATE_NOTE.format(unit="examples") + " GFLOPs: forward FLOPs per example (FlopCounterMode, "
            "1 multiply-add = 2 FLOPs). " + AT_ONCE_NOTE + " Commands show the seed as `{seed}`.",
            "model,seeds,test accuracy (%),train time (s),examples/s,params,GFLOPs,precision,machine,at once,"
            "val accuracy (%),command",
            [[r.model, ", ".join(map(str, r.seeds)), _mean_std(r.scores, 100, 2), *common(r),
              f"{(r.flops or 0) / 1e9:.3g}", r.precision, "; ".join(r.machines), _at_once(r), _vals(r, 100, 2),
              f"`{r.command}`"] for r in images]))
    texts = [r for r in rows if r.task == "language_model"]
    if texts:
        tables.append(_table(
            "Language models: test loss in nats per character (lower is better; bits = nats / ln 2) on the last "
            "part of the text, which training never saw: mean ± sample standard deviation over the seeds listed. "
            "Train time: seconds of training per run (validation excluded), mean. "
            + RATE_NOTE.format(unit="tokens") + " Commands show the seed as `{seed}`.",
            "model,seeds,test loss (nats/char),bits/char,train time (s),tokens/s,params,precision,machine,command",
            [[r.model, ", ".join(map(str, r.seeds)), _mean_std(r.scores, 1, 3),
              f"{statistics.mean(r.scores) / math.log(2):.3f}", *common(r), r.precision, "; ".join(r.machines),
              f"`{r.command}`"] for r in texts]))
    pairs = [r for r in rows if r.task == "seq2seq"]
    if pairs:
        tables.append(_table(
            "Translation: corpus BLEU and chrF (sacrebleu, cased, detokenised) of greedy decoding and of beam search "
            "on the test pairs, which training never saw: mean ± sample standard deviation over the seeds listed. "
            "Val BLEU: greedy, on the validation sample of the last record (the weights tested). Train time: "
            "seconds of training per run (validation excluded), mean. " + RATE_NOTE.format(unit="target tokens")
            + " Commands show the seed as `{seed}`.",
            "model,seeds,test BLEU greedy,test BLEU beam,test chrF greedy,train time (s),tokens/s,params,precision,"
            "machine,val BLEU,command",
            [[r.model, ", ".join(map(str, r.seeds)), _mean_std(r.scores, 1, 2), _beam(r), _field(r, "test_chrf"),
              *common(r), r.precision, "; ".join(r.machines), _vals(r, 1, 2), f"`{r.command}`"] for r in pairs]))
    return "\n\n".join("\n".join(t) for t in tables)


def _field(row: ResultRow, key: str, digits: int = 2) -> str:
    """Mean ± std of ``key`` over the row's results.json files ("?" where a file lacks it)."""
    values = [read_result(Path(p)).get(key) for p in row.paths]
    return "?" if not values or None in values else _mean_std([float(v) for v in values], 1, digits)


def _beam(row: ResultRow) -> str:
    keys = sorted({k for p in row.paths for k in read_result(Path(p)) if k.startswith("test_bleu_beam")})
    return "; ".join(f"{_field(row, k)} (beam {k[len('test_bleu_beam'):]})" for k in keys) or "–"


def _bare_command(command: str) -> str:
    """A row's command without the flags every published run adds: ``--no-progress`` and the seed."""
    tokens = [t for t in shlex.split(command.replace(" --seed {seed}", "")) if t != "--no-progress"]
    return shlex.join(tokens)


def _short_machine(row: ResultRow) -> str:
    names = []
    for m in row.machines:
        if "," in m:  # a CPU: "x86_64, 2 threads"
            names.append("CPU, " + m.split(", ", 1)[1])
        else:  # a GPU's name without the vendor and the memory: "NVIDIA H100 80GB HBM3" -> "H100"
            words = m.split()
            names.append(words[1] if words[0] in ("NVIDIA", "AMD", "Intel") and len(words) > 1 else words[0])
    return " / ".join(names)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 1000 else f"{seconds / 60:.0f} min"


def glance_rows(rows: Sequence[ResultRow], glance: Sequence[tuple[str, str]] = GLANCE
                ) -> list[tuple[str, ResultRow]]:
    """The rows :data:`GLANCE` names (label, row), best test accuracy first; a listed recipe without runs
    raises :class:`UserError`."""
    picked = []
    for label, command in glance:
        found = [r for r in rows if _bare_command(r.command) == command]
        if not found:
            raise UserError(f"no runs of `{command}` among the results read (deepnn.analysis.results.GLANCE "
                            "lists it); pass the folders that hold them")
        latest: dict[tuple[str, ...], ResultRow] = {}  # one row per machine: the recipe run last (the current one)
        for r in found:
            if r.machines not in latest or _finished(r) > _finished(latest[r.machines]):
                latest[r.machines] = r
        picked += [(label, r) for r in latest.values()]
    return sorted(picked, key=lambda lr: -lr[1].score if HIGHER_IS_BETTER[lr[1].task] else lr[1].score)


def _finished(row: ResultRow) -> str:
    """When the row's last run finished (ISO time from results.json; "" when unknown)."""
    return max((str(read_result(Path(p)).get("finished", "")) for p in row.paths), default="")


def glance_markdown(rows: Sequence[ResultRow], glance: Sequence[tuple[str, str]] = GLANCE,
                    text: Sequence[tuple[str, str]] = GLANCE_TEXT,
                    pairs: Sequence[tuple[str, str]] = GLANCE_PAIRS) -> str:
    """README's "Results at a glance" tables: the recipes of :data:`GLANCE` (image classifiers, test
    accuracy), of :data:`GLANCE_TEXT` (language models, held-out loss) and of :data:`GLANCE_PAIRS`
    (translation, held-out greedy BLEU), one line per recipe and machine."""
    tables = [_glance_table(rows, glance, "test accuracy", lambda s: _mean_std(s, 100, 2) + " %")]
    if text:
        tables.append(_glance_table(rows, text, "held-out loss (nats/char)", lambda s: _mean_std(s, 1, 3)))
    if pairs:
        tables.append(_glance_table(rows, pairs, "held-out BLEU (greedy)", lambda s: _mean_std(s, 1, 1)))
    return "\n\n".join(tables)


def _glance_table(rows: Sequence[ResultRow], glance: Sequence[tuple[str, str]], score: str,
                  fmt: Callable[[Sequence[float]], str]) -> str:
    lines = [f"| model | command | {score} | machine, training time per run |", "|---|---|---:|---|"]
    for label, r in glance_rows(rows, glance):
        n = len(r.scores)
        acc = fmt(r.scores) + ("" if n == 3 else f" ({n} seed{'s' if n > 1 else ''})")
        at_once = max(r.at_once, default=0)
        note = f" ({_at_once(r)} runs at once)" if at_once > 1 else ""
        lines.append(f"| {label} | `{_bare_command(r.command)}` | {acc} | {_short_machine(r)}, "
                     f"{_duration(statistics.mean(r.train_times))}{note} |")
    return "\n".join(lines)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "args":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_drift(command: str, recorded: dict[str, Any]) -> list[str]:
    """How the config ``command`` resolves to today (recipes and defaults of this checkout) differs from a
    run's ``config.yaml``: ``key: recorded -> today`` for each differing key, :data:`PER_RUN` keys left out.
    A key the recorded config lacks (added to the library later) counts only when today's value is not its
    default."""
    import argparse

    from ..cli import train as train_cli

    parser = argparse.ArgumentParser(prog="deepnn")
    train_cli.add_parser(parser.add_subparsers())
    tokens = shlex.split(command)
    if tokens[:2] != ["deepnn", "train"] or "--resume" in tokens:
        return [f"command {command!r} is not a fresh `deepnn train` (cannot be resolved)"]
    try:
        args = parser.parse_args(tokens[1:])
        today = _flat(train_cli.resolve_config(args).to_dict())
    except (SystemExit, UserError) as e:
        return [f"command no longer resolves: {e}"]
    before, default = _flat(recorded), _flat(Config().to_dict())
    diffs = []
    for key in sorted(set(today) | set(before)):
        if key in PER_RUN:
            continue
        if key not in before:
            if today[key] != default.get(key):
                diffs.append(f"{key}: (absent) -> {today[key]!r}")
        elif key not in today:
            diffs.append(f"{key}: {before[key]!r} -> (no such key)")
        elif today[key] != before[key]:
            diffs.append(f"{key}: {before[key]!r} -> {today[key]!r}")
    return diffs


def reproduce_markdown(paths: Sequence[str | Path]) -> str:
    """Whether each run's recorded command, resolved with today's recipes, gives its ``config.yaml``."""
    checked, drift = 0, []
    for path in map(Path, paths):
        record = read_result(path)
        config_file = path.parent / "config.yaml"
        if not config_file.is_file():
            drift.append((path.parent, "no config.yaml", ""))
            continue
        checked += 1
        diffs = config_drift(str(record.get("command", "")), load_yaml(config_file))
        if diffs:
            drift.append((path.parent, "; ".join(diffs), str(record.get("command", ""))))
    lines = [f"Commands checked against today's recipes: {checked} runs with a config.yaml; "
             f"{len(drift)} whose recorded command no longer gives the recorded config"
             + (":" if drift else ".")]
    if drift:
        lines += ["", "| run | recorded -> today |", "|---|---|"]
        lines += [f"| `{folder}` | {text.replace('|', chr(92) + '|')} |" for folder, text, _ in drift]
    return "\n".join(lines)


BEGIN, END = "<!-- BEGIN generated by `{}`; do not edit by hand -->", "<!-- END generated -->"


def update_generated(file: str | Path, command: str, text: str) -> bool:
    """Replace the block of ``file`` between ``BEGIN`` (naming ``command``) and the next ``END`` with ``text``;
    True when the file changed. A file without the markers raises :class:`UserError`."""
    file = Path(file)
    content = file.read_text()
    begin = BEGIN.format(command)
    start = content.find(begin)
    end = content.find(END, start + len(begin)) if start >= 0 else -1
    if end < 0:
        raise UserError(f"{file} has no block to update: add the lines\n{begin}\n{END}\nwhere the output goes")
    updated = content[:start] + begin + "\n" + text + "\n" + content[end:]
    if updated != content:
        file.write_text(updated)
    return updated != content


def generated_block(file: str | Path, command: str) -> str | None:
    """The text of ``file``'s block generated by ``command`` (None when it has none)."""
    content = Path(file).read_text()
    begin = BEGIN.format(command)
    start = content.find(begin)
    end = content.find(END, start) if start >= 0 else -1
    return content[start + len(begin) + 1:end - 1] if end >= 0 else None
