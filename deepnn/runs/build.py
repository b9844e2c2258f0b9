"""A whole training from a config: data → model → task → Trainer → test report → run folder.

:func:`build_training` is the one function that wires a training together; ``deepnn train``,
``deepnn nas`` and ``deepnn bench`` all use it. What differs between tasks is a :class:`TaskKind`
(the model registry's ``task`` picks it): how its data is loaded and batched, which task object and
which hooks it trains with, what FLOPs mean for it. :func:`train_run` runs it into a
:class:`~deepnn.runs.folder.RunFolder` and writes ``results.json``.

Started by ``torchrun`` with several processes, the same functions train data-parallel
(:mod:`deepnn.train.distributed`): every rank builds the same training, only rank 0 owns and writes
the run folder, ``data.batch_size`` is the global batch, and ``results.json`` records ``world_size``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis.summary import summarize_model
from ..data import ImageData, TensorLoader, load_image_data
from ..data.augment import AugmentHook, BatchAugment
from ..data.text import CharVocab, RandomWindowLoader, SequentialTextLoader, TextData, eval_windows, load_text_data
from ..errors import UserError
from ..models import count_parameters, create_model, model_info
from ..train import distributed
from ..train.checkpoint import Checkpoint, load_checkpoint, load_model_state
from ..train.config import Config
from ..train.tasks import ClassificationTask, LanguageModelTask, References, TranslationTask
from ..train.trainer import EarlyStopping, Trainer, resolve_device
from .folder import RunFolder, RunLogger


@dataclass
class Loaders:
    train: Any
    val: Any | None
    test: Any


class ImageClassification:
    """Image classification on Fashion-MNIST (or any :class:`~deepnn.data.images.ImageData`)."""

    task = "classification"
    facts = ("classes", "mean", "std", "input_shape")  # what a run's checkpoints must hold under meta["data"]

    def load(self, cfg: Config, device: torch.device, data: ImageData | None = None
             ) -> tuple[dict[str, Any], dict[str, Any], Loaders]:
        if data is None:
            data = load_image_data(cfg.data.name, data_dir=cfg.data.data_dir, val_size=cfg.data.val_size,
                                   seed=cfg.train.seed)
        c, h, _ = data.input_shape
        args = {"num_classes": len(data.classes), "in_channels": c, "input_size": h, **cfg.model.args}
        x, y = data.train
        if cfg.data.train_subset is not None:
            x, y = x[: cfg.data.train_subset], y[: cfg.data.train_subset]
        on = lambda pair: tuple(t.to(device) for t in pair)  # noqa: E731 - whole dataset on the device
        loaders = Loaders(
            TensorLoader(*on((x, y)), cfg.data.batch_size, shuffle=True, seed=cfg.train.seed, drop_last=True),
            TensorLoader(*on(data.val), cfg.data.eval_batch_size) if len(data.val[0]) else None,
            TensorLoader(*on(data.test), cfg.data.eval_batch_size))
        facts = {"classes": list(data.classes), "mean": data.mean, "std": data.std,
                 "input_shape": list(data.input_shape), "dataset": cfg.data.name}
        return args, facts, loaders

    def make_task(self, cfg: Config, facts: dict[str, Any]) -> ClassificationTask:
        return ClassificationTask(len(facts["classes"]), cfg.train.label_smoothing, tta_flip=cfg.train.tta_flip)

    def hooks(self, cfg: Config, device: torch.device) -> list[Any]:
        augment = BatchAugment(cfg.data.crop_padding, cfg.data.flip, cfg.data.erase_prob)
        return [AugmentHook(augment, device, cfg.train.seed)] if augment.enabled else []

    def flops(self, cfg: Config, facts: dict[str, Any]) -> int | None:
        """Forward FLOPs per example."""
        return summarize_model(cfg.model.name, facts["input_shape"], **facts["model_args"]).flops


class LanguageModelling:
    """Character-level language modelling of a UTF-8 text (lecture items R1, R3)."""

    task = "language_model"
    facts = ("vocab",)

    def text(self, cfg: Config, vocab: CharVocab | None = None) -> TextData:
        if not cfg.data.path:
            raise UserError(f"{cfg.model.name} is a language model: give the text to train on with --text FILE "
                            "(data.path)")
        return load_text_data(cfg.data.path, val_fraction=cfg.data.val_fraction,
                               test_fraction=cfg.data.test_fraction, vocab=vocab)

    def load(self, cfg: Config, device: torch.device, data: TextData | None = None
             ) -> tuple[dict[str, Any], dict[str, Any], Loaders]:
        data = data if data is not None else self.text(cfg)
        args = {"vocab_size": len(data.vocab), **cfg.model.args}
        on = lambda t: t.to(device)  # noqa: E731
        d = cfg.data
        if d.batching == "sequential":
            train = SequentialTextLoader(on(data.train), d.batch_size, d.seq_len, seed=cfg.train.seed)
        elif d.batching == "random":
            train = RandomWindowLoader(on(data.train), d.batch_size, d.seq_len, seed=cfg.train.seed)
        else:
            raise UserError(f"data.batching={d.batching!r} is not a batching; use sequential or random")
        val = eval_windows(on(data.val), d.seq_len, d.batch_size) if len(data.val) else None
        loaders = Loaders(train, val, eval_windows(on(data.test), d.seq_len, d.batch_size))
        facts = {"vocab": data.vocab.to_list(), "dataset": str(data.source),
                 "tokens": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}}
        return args, facts, loaders

    def make_task(self, cfg: Config, facts: dict[str, Any]) -> LanguageModelTask:
        return LanguageModelTask(cfg.train.label_smoothing)

    def hooks(self, cfg: Config, device: torch.device) -> list[Any]:
        _no_image_options(cfg, "a language model")
        return []

    def flops(self, cfg: Config, facts: dict[str, Any]) -> int | None:
        return None  # the summary counts convolutional networks' FLOPs per image, not per token


def _no_image_options(cfg: Config, what: str) -> None:
    if cfg.data.crop_padding or cfg.data.flip or cfg.data.erase_prob:
        raise UserError(f"data.crop_padding, data.flip and data.erase_prob augment images; {what} takes none of them")
    if cfg.train.tta_flip:
        raise UserError(f"train.tta_flip averages mirrored images; {what} cannot use it")


class EvalPairs:
    """An evaluation loader of translation pairs whose batches carry :class:`References` for the rows among the
    first ``translate`` pairs of the split (``None``: all), a fixed sample: ``(src, tgt, index, References | None)``."""

    def __init__(self, batches: Any, references: list[str], translate: int | None, beams: tuple[int, ...]) -> None:
        self.loader, self.references, self.translate, self.beams = batches, references, translate, beams

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int = 0, start: int = 0) -> Any:
        for src, tgt, index in self.loader.batches(epoch, start):
            rows = [j for j, i in enumerate(index.tolist()) if self.translate is None or i < self.translate]
            refs = References([self.references[int(index[j])] for j in rows], self.beams, rows) if rows else None
            yield src, tgt, index, refs


class Translation:
    """Sentence-pair translation (lecture items T1, T4, T5): ``source<TAB>target`` files, one sentencepiece
    vocabulary for both languages trained on the training pairs, length-bucketed batches."""

    task = "seq2seq"
    facts = ("tokenizer",)

    def splits(self, cfg: Config) -> tuple[dict[str, list[tuple[str, str]]], dict[str, int]]:
        """The train / val / test pairs of ``cfg`` and the number of malformed lines skipped per file.

        ``--valid`` and ``--test`` files are used as given; a split without one is cut from the end of the
        training file (``data.holdout_pairs`` each): the test pairs are the very last, validation before them.
        Malformed lines are reported (stderr) with their line numbers, never dropped silently.
        """
        from ..data.pairs import read_pairs

        d = cfg.data
        if not d.path:
            raise UserError(f"{cfg.model.name} translates sentence pairs: give the training pairs with --pairs FILE "
                            "(data.path), a UTF-8 file of `source<TAB>target` lines")
        files = {"train": read_pairs(d.path)}
        for split, path in (("val", d.valid_path), ("test", d.test_path)):
            if path:
                files[split] = read_pairs(path)
        for f in files.values():
            if f.warning():
                print(f"warning: {f.warning()}", file=sys.stderr)
        pairs = {split: f.pairs for split, f in files.items()}
        for split in ("test", "val"):
            if split not in files:
                if len(pairs["train"]) <= d.holdout_pairs:
                    raise UserError(f"{d.path} has {len(pairs['train'])} pairs, too few to cut {d.holdout_pairs} "
                                    f"{split} pairs from its end; give --{'valid' if split == 'val' else 'test'} FILE "
                                    "or a smaller data.holdout_pairs")
                pairs["train"], pairs[split] = pairs["train"][:-d.holdout_pairs], pairs["train"][-d.holdout_pairs:]
        return pairs, {split: len(f.skipped) for split, f in files.items()}

    @staticmethod
    def evaluation(tokenizer: Any, pairs: list[tuple[str, str]], max_len: int, max_tokens: int,
                   translate: int | None, beams: tuple[int, ...]) -> EvalPairs:
        """An evaluation loader over ``pairs``: sides longer than ``max_len - 1`` tokens are cut for the
        teacher-forced loss (the references stay whole); the first ``translate`` sentences (``None``: all)
        are translated with each beam size in ``beams`` for BLEU."""
        from ..data.pairs import PairBatches

        cut = lambda texts: [r[: max_len - 1] for r in tokenizer.encode(texts)]  # noqa: E731
        src, tgt = cut([p[0] for p in pairs]), cut([p[1] for p in pairs])
        return EvalPairs(PairBatches(src, tgt, max_tokens, shuffle=False), [p[1] for p in pairs], translate, beams)

    def load(self, cfg: Config, device: torch.device, data: Any = None
             ) -> tuple[dict[str, Any], dict[str, Any], Loaders]:
        from ..data.pairs import PairBatches, Tokenizer, filter_long

        d = cfg.data
        pairs, malformed = self.splits(cfg)
        tokenizer = Tokenizer.train((side for pair in pairs["train"] for side in pair), d.vocab_size, d.tokenizer)
        args = {"vocab_size": len(tokenizer), "max_len": d.max_len, **cfg.model.args}
        src, tgt = (tokenizer.encode([p[i] for p in pairs["train"]]) for i in (0, 1))
        kept, dropped = filter_long(src, tgt, args["max_len"])
        if dropped:
            print(f"warning: {len(dropped)} training pairs longer than {args['max_len'] - 1} tokens on a side were "
                  "left out (data.max_len)", file=sys.stderr)
        train = PairBatches([src[i] for i in kept], [tgt[i] for i in kept], d.max_tokens, shuffle=True,
                            seed=cfg.train.seed)
        beams = (1,) if cfg.train.beam_size == 1 else (1, cfg.train.beam_size)
        loaders = Loaders(train,
                          self.evaluation(tokenizer, pairs["val"], args["max_len"], d.max_tokens, d.bleu_sentences,
                                          (1,)),
                          self.evaluation(tokenizer, pairs["test"], args["max_len"], d.max_tokens, None, beams))
        facts = {"tokenizer": tokenizer.to_base64(), "dataset": str(d.path),
                 "pairs": {split: len(ps) for split, ps in pairs.items()}, "dropped_long": len(dropped),
                 "malformed_lines": malformed, "padding_fraction": round(train.padding_fraction, 4)}
        return args, facts, loaders

    def make_task(self, cfg: Config, facts: dict[str, Any]) -> TranslationTask:
        from ..data.pairs import Tokenizer

        return TranslationTask(Tokenizer.from_base64(facts["tokenizer"]), cfg.train.label_smoothing,
                               cfg.train.length_penalty)

    def hooks(self, cfg: Config, device: torch.device) -> list[Any]:
        _no_image_options(cfg, "a translation model")
        return []

    def flops(self, cfg: Config, facts: dict[str, Any]) -> int | None:
        return None


KINDS: dict[str, Any] = {"classification": ImageClassification(), "language_model": LanguageModelling(),
                         "seq2seq": Translation()}


def task_kind(model_name: str) -> Any:
    """The :class:`TaskKind` of a registered model (by its registry ``task``)."""
    task = model_info(model_name).task
    if task not in KINDS:
        raise UserError(f"{model_name} is a {task} model, which `deepnn train` cannot train yet")
    return KINDS[task]


@dataclass
class Training:
    """What :func:`build_training` returns: the trainer, the test loader (read once, for the report),
    the task kind and the JSON-able facts stored in every checkpoint under ``meta["data"]``."""

    trainer: Trainer
    test: Any
    kind: Any
    facts: dict[str, Any]


def build_training(cfg: Config, folder: RunFolder | None = None, *, data: Any = None,
                   model: nn.Module | None = None, hooks: list[Any] | None = None) -> Training:
    """Data, model, task and :class:`~deepnn.train.Trainer` for ``cfg``.

    Args:
        cfg: the run's config; ``model.name``'s registry task picks the :class:`TaskKind`.
        folder: the run folder (metrics, curves, checkpoints); ``None`` writes nothing.
        data: already loaded data (NAS children share one copy; benchmarks pass synthetic data).
        model: an already built model (a NAS child) instead of ``create_model(model.name, ...)``.
        hooks: extra trainer hooks.
    """
    cfg.validate()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    kind = task_kind(cfg.model.name)
    dist = distributed.setup(cfg.train.device, cfg.train.ddp)  # torchrun: join the group (None: one process)
    device = dist.device if dist is not None else resolve_device(cfg.train.device)
    if cfg.train.deterministic:  # before anything draws a random number or touches cuBLAS
        distributed.deterministic(cfg.train.seed, device)
    torch.manual_seed(cfg.train.seed)
    args, facts, loaders = kind.load(cfg, device, data)
    facts["model_args"] = args
    if model is None:
        model = create_model(cfg.model.name, conv_impl=cfg.model.conv_impl, **args)
    task = kind.make_task(cfg, facts)
    all_hooks = [*kind.hooks(cfg, device), *(hooks or [])]
    if folder is not None:
        all_hooks.append(RunLogger(folder, f"{cfg.model.name} on {Path(str(facts['dataset'])).name}", task.metric))
    if cfg.train.early_stop_patience:
        all_hooks.append(EarlyStopping(cfg.train.early_stop_patience, f"val_{task.metric}", task.mode))
    if cfg.train.tensorboard:
        tb = tensorboard_hook(cfg, kind, facts, loaders, folder)  # the package is checked on every rank
        if folder is not None:
            all_hooks.append(tb)
    trainer = Trainer(model, task, loaders.train, loaders.val, cfg=cfg,
                      run_dir=folder.path if folder is not None else None, hooks=all_hooks, meta={"data": facts})
    return Training(trainer, loaders.test, kind, facts)


def tensorboard_hook(cfg: Config, kind: Any, facts: dict[str, Any], loaders: Loaders,
                     folder: RunFolder | None) -> Any:
    """The :class:`~deepnn.train.tensorboard.TensorBoardLogger` of a run: ``RUN/tensorboard/``, with a text
    sample (language models) or a grid of validation predictions (images) at each record."""
    from ..train.tensorboard import TensorBoardLogger, image_predictions, text_sampler

    sample = images = None
    eval_loader = loaders.val if loaders.val is not None else loaders.test
    if kind.task == "language_model":
        vocab = CharVocab.from_list(facts["vocab"])
        first = eval_loader.tokens[:8] if eval_loader is not None else None
        prompt = vocab.decode(first) if first is not None and len(first) else vocab.chars[0]
        sample = text_sampler(vocab, prompt, length=120, seed=cfg.train.seed)
    elif kind.task == "classification" and eval_loader is not None:
        x, y = eval_loader.x[:8], eval_loader.y[:8]
        images = image_predictions(x, y, facts["classes"], facts["mean"], facts["std"])
    log_dir = folder.path / "tensorboard" if folder is not None else Path("tensorboard")
    return TensorBoardLogger(log_dir, cfg.train.tensorboard_every_steps, sample=sample, images=images)


def git_commit() -> str | None:
    """The library's commit, ``<hash>-dirty`` when its tracked files differ from it; ``None`` outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def busy_cores(seconds: float = 0.25) -> float:
    """How many CPU cores other processes keep busy right now: the share of non-idle time in
    ``/proc/stat`` over ``seconds``, times the number of cores (Linux); elsewhere the 1-minute load
    average (which lags: a run that just ended still counts)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle + iowait

    try:
        (t0, i0), _ = sample(), time.sleep(seconds)
        t1, i1 = sample()
        return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def warn_if_oversubscribed(device: torch.device) -> bool:
    """Warn (stderr) when other processes already keep the CPU cores busy and PyTorch will use several
    threads: its OpenMP threads then wait for each other, and training ran 50-80x slower than with
    ``--threads 1`` on a loaded 2-core machine. Returns whether it warned."""
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        return False
    busy = busy_cores()
    if busy + threads <= cores + 0.5:
        return False
    print(f"warning: the machine is busy ({busy:.1f} of {cores} cores in use by other processes) and PyTorch will "
          f"use {threads} threads, which can make training many times slower; give each run --threads 1 (or fewer "
          "threads)", file=sys.stderr)
    return True


def train_run(cfg: Config, run_dir: str | Path, *, resume: bool = False, command: str | None = None
              ) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir`` (resuming from its ``last`` checkpoint if asked); returns results.

    The folder is checked and locked before anything is written (:class:`RunFolder`); the test split is
    evaluated once, at the end, with the weights the run evaluates (the weight average with
    ``train.ema_decay``, else the final weights), and the report goes to ``results.json``.
    """
    folder = RunFolder(run_dir)
    main = distributed.env_rank() == 0  # under torchrun only rank 0 owns and writes the folder
    if main:
        folder.check(resume)
    commit = git_commit()  # the code this run starts with, before anyone edits the checkout during a long run
    try:
        # the config is validated, and data and model errors surface, here: before the folder exists
        training = build_training(cfg, folder if main else None)
        trainer = training.trainer
        if main:
            folder.claim(resume)
            warn_if_oversubscribed(trainer.device)
        if resume:
            trainer.resume(folder.last)  # every rank reads rank 0's checkpoint (one machine, or a shared disk)
        elif main:
            folder.write_config(cfg.to_dict())
        trainer.fit()
        report = trainer.task.report(trainer.evaluate(training.test))
        results = {
            "task": training.kind.task, "model": cfg.model.name, "model_args": training.facts["model_args"],
            "dataset": training.facts["dataset"], **{k: v for k, v in report.items() if k != "confusion"},
            f"best_val_{trainer.task.metric}": trainer.best_val, "epochs": trainer.epoch, "steps": trainer.global_step,
            "train_time_s": trainer.train_time, "warmup_time_s": trainer.warmup_time,
            f"{trainer.task.unit}_per_s": trainer.units_seen / max(trainer.train_time, 1e-9),
            "params": count_parameters(trainer.model), "flops": training.kind.flops(cfg, training.facts),
            "weights": "ema" if trainer.ema is not None else "final",
            "seed": cfg.train.seed, "precision": cfg.train.precision, "threads": torch.get_num_threads(),
            "device": str(trainer.device), "world_size": trainer.world_size,
            "global_batch_size": cfg.data.batch_size, "ddp_max_weight_diff": trainer.weight_divergence,
            "deterministic": cfg.train.deterministic, "machine": machine(), "git_commit": commit,
            "command": command or " ".join(sys.argv), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if "confusion" in report:
            results["confusion"] = report["confusion"]
        if main:
            folder.write_results(results)
        return results
    finally:
        if main:
            folder.release()
        distributed.shutdown()


@dataclass
class LoadedRun:
    """A trained model rebuilt from a run folder: the model (eval mode), its checkpoint's metadata,
    the config, the task kind and which weights were loaded (``"final"``, ``"ema"`` or ``"best"``)."""

    model: nn.Module
    meta: dict[str, Any]
    cfg: Config
    kind: Any
    weights: str
    path: Path


def _checkpoint_path(path: Path, which: str) -> Path:
    if path.is_dir():
        other = "best" if which == "last" else "last"
        found = [p for p in (path / f"{which}.safetensors", path / f"{other}.safetensors") if p.is_file()]
        if not found:
            raise UserError(f"{path} holds no checkpoint (best.safetensors / last.safetensors); is it a run folder?")
        return found[0]
    if not path.exists():
        raise UserError(f"run folder or checkpoint {str(path)!r} does not exist")
    return path


def load_run(path: str | Path, which: str = "last") -> LoadedRun:
    """Rebuild a trained model from a run folder (or a checkpoint file).

    ``which="last"`` (the default) gives the weights the run's ``results.json`` reports: the weight
    average when the run kept one, else the final weights; ``"best"`` the best validated weights.
    """
    ckpt: Checkpoint = load_checkpoint(_checkpoint_path(Path(path), which), require=("config", "data"))
    cfg = Config.from_dict(ckpt.meta["config"], "checkpoint config")
    kind = task_kind(cfg.model.name)
    missing = [k for k in ("model_args", *kind.facts) if k not in ckpt.meta["data"]]
    if missing:
        raise UserError(f"checkpoint {ckpt.path} lacks data.{missing[0]} in its metadata; it was edited or written "
                        "by something else: use the run's other checkpoint or train again")
    args = ckpt.meta["data"]["model_args"]
    try:
        model = create_model(cfg.model.name, conv_impl=cfg.model.conv_impl, **args)
    except UserError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise UserError(f"checkpoint {ckpt.path}: its data.model_args {json.dumps(args)[:120]} do not build "
                        f"{cfg.model.name} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                        "the metadata was edited: use the run's other checkpoint or train again") from None
    if ckpt.path is not None and ckpt.path.name == "best.safetensors":
        weights = "best"
    elif ckpt.ema:
        ckpt.model, weights = ckpt.ema, "ema"
    else:
        weights = "final"
    load_model_state(model, ckpt, repr(cfg.model.name))
    model.eval()
    return LoadedRun(model, ckpt.meta, cfg, kind, weights, ckpt.path)


def seq2seq_run(loaded: LoadedRun, command: str) -> tuple[LoadedRun, Any]:
    """``loaded`` and its tokenizer, or a one-line error when the run is not a translation run."""
    if loaded.kind.task != "seq2seq":
        raise UserError(f"{loaded.path} is a {loaded.kind.task} run of {loaded.cfg.model.name}; `deepnn {command}` "
                        "needs a translation run (`deepnn models --task seq2seq`: transformer_mt, seq2seq_attn)")
    from ..data.pairs import Tokenizer

    return loaded, Tokenizer.from_base64(loaded.meta["data"]["tokenizer"])
