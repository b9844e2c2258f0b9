"""``deepnn train MODEL``: train a registered model with a recipe, overrides, resume."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from ..errors import UserError
from ..models import model_info
from ..runs import train_run
from ..runs.folder import RunFolder
from ..train.checkpoint import load_checkpoint
from ..train.config import Config, apply_overrides, load_yaml, merge_into, recipe_path, set_key
from ..train.distributed import env_rank

# shortcut flag -> config key
SHORTCUTS = {
    "epochs": "train.epochs", "lr": "optim.lr", "batch_size": "data.batch_size", "seed": "train.seed",
    "device": "train.device", "precision": "train.precision", "data_dir": "data.data_dir",
    "conv_impl": "model.conv_impl", "text": "data.path", "minutes": "train.max_minutes", "threads": "train.threads",
    "pairs": "data.path", "valid": "data.valid_path", "test": "data.test_path",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (progress bar, checkpoints, metrics, curves)",
        description="Train a registered model on its task's data (images: Fashion-MNIST; language models: "
                    "--text FILE). Settings come from, in order: the built-in "
                    "recipe for the model (recipes/<model>.yaml), --recipe, --config, shortcut flags, --set. "
                    "The run folder gets config.yaml, metrics.jsonl, curves.png, last/best checkpoints and "
                    "results.json.",
        epilog="examples:\n  deepnn train lenet --epochs 10\n"
               "  deepnn train char_lstm --text shakespeare.txt --minutes 10\n"
               "  deepnn train transformer_mt --pairs en-fr.train.tsv --valid en-fr.valid.tsv --minutes 20\n"
               "  deepnn train lenet --config recipes/lenet.yaml --set optim.lr=0.05\n"
               "  deepnn train lenet --resume runs/lenet-20261126-101500/\n"
               "  torchrun --nproc_per_node=2 -m deepnn train lenet --threads 1   # data-parallel, 2 processes\n"
               "\ndata-parallel (torchrun): --batch-size is the global batch, split among the processes; the\n"
               "learning rate is not scaled. A run may be resumed with a different number of processes.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name (see `deepnn models`)")
    p.add_argument("--recipe", help="named recipe: recipes/<model>-<RECIPE>.yaml (e.g. fast)")
    p.add_argument("--config", help="YAML config file (keys: model, data, optim, sched, train)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/<model>-<date>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in this folder exactly")
    p.add_argument("--epochs", type=int, help="number of epochs (train.epochs)")
    p.add_argument("--lr", type=float, help="base learning rate (optim.lr)")
    p.add_argument("--batch-size", type=int, help="training batch size (data.batch_size)")
    p.add_argument("--seed", type=int, help="random seed (train.seed)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (train.device)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="bf16 autocast or fp32 (train.precision)")
    p.add_argument("--data-dir", help="folder with the dataset files (data.data_dir)")
    p.add_argument("--conv-impl", choices=["torch", "scratch"], help="PyTorch's or our from-scratch conv/pool")
    p.add_argument("--text", help="a UTF-8 text file to train a language model on (data.path)")
    p.add_argument("--pairs", help="translation: training pairs, a UTF-8 file of `source<TAB>target` lines (data.path)")
    p.add_argument("--valid", help="translation: validation pairs (data.valid_path; default: cut from --pairs)")
    p.add_argument("--test", help="translation: test pairs (data.test_path; default: the last "
                                  "data.holdout_pairs of --pairs)")
    p.add_argument("--minutes", type=float, help="training time budget in minutes (train.max_minutes)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (train.threads); one per run when "
                                               "several runs share a machine")
    p.add_argument("--tensorboard", action="store_true",
                   help="TensorBoard event files in RUN/tensorboard/ (train.tensorboard; pip install "
                        "'deepnn[tensorboard]')")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels only, every generator seeded (train.deterministic)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> Config:
    """Recipe → --config → shortcut flags → --set, each layer type-checked."""
    info = model_info(args.model)
    cfg = Config()
    cfg.model.name = info.name
    if args.recipe and recipe_path(info.name, args.recipe) is None:
        raise UserError(f"no recipe {args.recipe!r} for {info.name} "
                        f"(looked for recipes/{info.name}-{args.recipe}.yaml)")
    for layer, path in (("recipe", recipe_path(info.name, args.recipe)), ("config", args.config)):
        if path is not None:
            d = load_yaml(path)
            named = (d.get("model") or {}).get("name", info.name) if isinstance(d.get("model"), dict) else info.name
            if model_info(named).name != info.name:
                raise UserError(f"{path} is a {layer} for model {named!r}, not {info.name!r}")
            merge_into(cfg, d, str(path))
    for attr, key in SHORTCUTS.items():  # typed by argparse: set as given (a file name stays a string)
        if getattr(args, attr) is not None:
            set_key(cfg, key, getattr(args, attr))
    apply_overrides(cfg, args.overrides)
    if args.text and info.task != "language_model":
        raise UserError(f"--text is for language models; {info.name} is a {info.task} model "
                        "(`deepnn models --task language_model` lists them)")
    given = [f"--{a}" for a in ("pairs", "valid", "test") if getattr(args, a)]
    if given and info.task != "seq2seq":
        raise UserError(f"{given[0]} is for translation models; {info.name} is a {info.task} model "
                        "(`deepnn models --task seq2seq` lists them)")
    if cfg.data.path and info.task == "classification":
        raise UserError(f"data.path is a text or pairs file; {info.name} is an image classifier trained on "
                        f"{cfg.data.name}")
    if args.no_progress:
        cfg.train.progress = False
    if args.tensorboard:
        cfg.train.tensorboard = True
    if args.deterministic:
        cfg.train.deterministic = True
    return cfg


def report_line(results: dict) -> str:
    """One line of a finished run's test results, whatever its task."""
    time_part = (f"{results['epochs']} epochs, {results['steps']} steps, {results['train_time_s']:.1f} s training")
    if results.get("task") == "seq2seq":
        beam = "".join(f", beam {k[len('test_bleu_beam'):]} {v:.2f}" for k, v in results.items()
                       if k.startswith("test_bleu_beam"))
        return (f"test BLEU {results['test_bleu']:.2f} greedy{beam}, chrF {results['test_chrf']:.2f}, "
                f"loss {results['test_loss']:.4f}  ({time_part}, {results['tokens_per_s']:.0f} tokens/s)")
    if results.get("task") == "language_model":
        return (f"test loss {results['test_loss']:.4f} nats/char ({results['test_bits_per_char']:.3f} bits/char, "
                f"perplexity {results['test_perplexity']:.2f})  ({time_part}, {results['tokens_per_s']:.0f} tokens/s)")
    return (f"test accuracy {results['test_accuracy']:.4f}  test loss {results['test_loss']:.4f}  "
            f"({time_part}, {results['examples_per_s']:.0f} examples/s)")


def run(args: argparse.Namespace) -> int:
    command = "deepnn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    main = env_rank() == 0  # under torchrun only rank 0 talks
    if args.resume:
        run_dir = Path(args.resume)
        if run_dir.name.endswith(".safetensors"):
            run_dir = run_dir.parent  # --resume RUN/last.safetensors means the run folder
        changed = [a for a in (*SHORTCUTS, "config", "recipe", "out") if getattr(args, a) is not None]
        changed += ["deterministic"] * bool(args.deterministic)
        if changed or args.overrides:
            raise UserError("a resumed run keeps its own config; drop " +
                            ", ".join([f"--{c.replace('_', '-')}" for c in changed] + ["--set"] * bool(args.overrides)))
        RunFolder(run_dir).check(resume=True)
        meta = load_checkpoint(run_dir / "last.safetensors").meta
        cfg = Config.from_dict(meta["config"], "checkpoint config")
        if cfg.model.name != model_info(args.model).name:
            raise UserError(f"{run_dir} is a run of {cfg.model.name!r}, not {args.model!r}")
        cfg.train.progress = not args.no_progress
        cfg.train.tensorboard = cfg.train.tensorboard or args.tensorboard  # logging only: may be turned on
        if main:
            print(f"resuming {run_dir} at epoch {meta['epoch'] + 1}, step {meta['global_step']}")
    else:
        cfg = resolve_config(args)
        run_dir = Path(args.out or f"runs/{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        results = train_run(cfg, run_dir, resume=bool(args.resume), command=command)
    except KeyboardInterrupt:
        if not main:
            return 130
        if (run_dir / "last.safetensors").is_file():
            print(f"interrupted; checkpoint saved. Continue with: deepnn train {cfg.model.name} --resume {run_dir}",
                  file=sys.stderr)
        else:
            print("interrupted before the first checkpoint; nothing to resume", file=sys.stderr)
        return 130
    if main:
        print(report_line(results))
        print(f"run folder: {run_dir}")
    return 0
