"""``deepnn nas``: architecture search (C20, Zoph & Le 2017).

* ``deepnn nas search --trials 100 --workers 2 --out DIR [--strategy random] [--resume] [--seed S]
  [--config FILE] [--set KEY=VALUE ...]``: a crash-safe, resumable search over the ``nas_child`` space
  (:mod:`deepnn.nas.runner`); one line per finished trial, then the best architectures.
* ``deepnn nas report DIR... -o nas.png``: best-so-far curves, top architectures, controller entropy
  (:mod:`deepnn.nas.report`).
* ``deepnn nas --steps 10`` (no subcommand): the lecture's first, small loop (a filter size and a number
  of filters per layer, one child per step, a JSON record at the end), kept as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
from pathlib import Path

from ..data import load_image_data
from ..errors import UserError
from ..nas import SearchSpace, Step, child_reward, search
from ..train.config import Config, apply_overrides, load_yaml, merge_into


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nas", help="neural architecture search: an LSTM controller trained with REINFORCE (C20)",
        description="Zoph & Le 2016 on a CPU budget: a controller samples a CNN (per conv layer a filter "
                    "size from 1, 3, 5 and a number of filters from 8, 16, 32), the child is trained for "
                    "--epochs on the first --train-subset Fashion-MNIST training images, its validation "
                    "accuracy is the reward R, and the controller takes a REINFORCE step on "
                    "-(R - baseline) * log p(arch). Rewards of architectures seen before are reused.",
        epilog="examples:\n"
               "  deepnn nas search --trials 100 --workers 2 --out nas/rl-s0\n"
               "  deepnn nas search --strategy random --trials 100 --workers 2 --out nas/random-s0\n"
               "  deepnn nas search --out nas/rl-s0 --resume          # after a crash, Ctrl-C or kill -9\n"
               "  deepnn nas report nas/rl-s* nas/random-s* -o nas.png\n"
               "  deepnn nas --steps 10 --train-subset 2000 --epochs 1 --seed 0 --out nas.json   # the small loop",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="architectures sampled and controller updates (default 10)")
    p.add_argument("--layers", type=int, default=2, help="conv layers of each child (default 2)")
    p.add_argument("--train-subset", type=int, default=2000, help="training images per child (default 2000)")
    p.add_argument("--val-size", type=int, default=1000, help="validation images the reward is measured on "
                                                               "(held out of the training split; default 1000)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per child (default 1)")
    p.add_argument("--batch-size", type=int, default=64, help="children's training batch size (default 64)")
    p.add_argument("--lr", type=float, default=0.01, help="children's AdamW learning rate (default 0.01)")
    p.add_argument("--controller-lr", type=float, default=0.01, help="the controller's Adam learning rate "
                                                                     "(default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seeds the controller, its samples and the children")
    p.add_argument("--device", default="auto", help="where children train: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST files (default: DEEPNN_DATA)")
    p.add_argument("--out", metavar="FILE", help="write the settings and the history as JSON")
    p.set_defaults(func=run)
    sub_nas = p.add_subparsers(dest="nas_command", metavar="{search,report}")
    add_search_parser(sub_nas)
    add_report_parser(sub_nas)


def add_search_parser(sub: argparse._SubParsersAction) -> None:
    from ..nas.runner import SearchSettings

    d = SearchSettings()
    p = sub.add_parser(
        "search", help="a crash-safe, resumable search over nas_child architectures (REINFORCE or random)",
        description="Zoph & Le 2017 on a CPU budget. Each trial is an architecture string of the nas_child model "
                    "(per conv layer a filter height and width from 1, 3, 5, 7, 16/32/64 filters, stride 1 or 2, "
                    "skip connections to earlier layers), trained like `deepnn train nas_child` (default proxy: "
                    "1 epoch on 5,000 training images, 1 thread; --config/--set change it as for deepnn train); its "
                    "validation accuracy is the reward. Every finished trial is appended to OUT/trials.jsonl; the "
                    "controller is saved after each update; --resume continues a killed search without losing or "
                    "repeating a trial. --backend ray trains the children as Ray tasks on an existing cluster "
                    "(pip install 'deepnn[ray]'); every node needs deepnn installed and finds the data as `deepnn "
                    "train` does there: set DEEPNN_DATA (or --set data.data_dir=...) to a folder holding it on "
                    "each node. The records are the same with either backend.",
        epilog="examples:\n  deepnn nas search --trials 100 --workers 2 --out nas/rl-s0 --seed 0\n"
               "  deepnn nas search --strategy random --trials 100 --workers 2 --out nas/random-s0 --seed 0\n"
               "  deepnn nas search --out nas/rl-s0 --resume\n"
               "  deepnn nas search --trials 20 --out nas/t --set data.train_subset=1000 --set train.max_minutes=0.2\n"
               "  deepnn nas search --trials 500 --workers 32 --backend ray --ray-address HEAD:6379 --out nas/rl-big\n"
               "  deepnn nas search --trials 20 --workers 2 --backend ray --out nas/t   # a local Ray instance",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="the search folder (new or empty, or with --resume)")
    p.add_argument("--trials", type=int, help=f"children to evaluate (default {d.trials})")
    p.add_argument("--workers", type=int, help="children trained at once, one process and one thread each; with "
                                                "--backend ray the Ray tasks in flight (default 1)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where children train: local processes (default), or Ray tasks (num_cpus=1 each) on the "
                        "cluster at --ray-address; each node needs DEEPNN_DATA (or data.data_dir) set there")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="the Ray cluster to join, e.g. HEAD:6379, or auto for one `ray start` began on this machine "
                        "(default: RAY_ADDRESS; without either, a local Ray instance with --workers CPUs is started "
                        "and stopped)")
    p.add_argument("--strategy", choices=["rl", "random"], help="REINFORCE controller or random search (default rl)")
    p.add_argument("--seed", type=int, help="seeds the controller, the data split and every child (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out (its settings are kept)")
    p.add_argument("--archs-per-update", type=int, help=f"architectures per controller update "
                                                        f"(default {d.archs_per_update})")
    p.add_argument("--controller-lr", type=float,
                   help=f"the controller's Adam learning rate (default {d.controller_lr})")
    p.add_argument("--entropy-weight", type=float, help=f"entropy bonus of the controller (default {d.entropy_weight})")
    p.add_argument("--max-params", type=int, help=f"larger children get reward 0 untrained (default {d.max_params})")
    p.add_argument("--max-flops", type=int, help="children with more FLOPs per image get reward 0 untrained "
                                                  "(default: no limit)")
    p.add_argument("--over-budget", choices=["fail", "redraw"],
                   help="an architecture over --max-params/--max-flops: a trial with reward 0 (fail, default), or "
                        "drawn again until one fits, so every trial trains a child (redraw)")
    p.add_argument("--layers", type=int, help="conv layers of each child (default 4)")
    p.add_argument("--filters", help="comma-separated numbers of filters to choose from (default 16,32,64)")
    p.add_argument("--config", help="YAML config for the children's training (keys: data, optim, sched, train)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the children's training config, e.g. --set train.epochs=2 (repeatable); "
                        "a budget in seconds: --set train.max_minutes=0.25")
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    p.set_defaults(func=run_search_cmd)


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="compare searches: best-so-far curves, top architectures, controller entropy",
        description="Read search folders (trials.jsonl), group them by strategy and draw best-so-far validation "
                    "accuracy against trials and against wall time (mean ± std over the searches of a strategy), "
                    "and the controller's entropy; print a markdown table of the searches and the top "
                    "architectures with parameters and FLOPs.",
        epilog="example:\n  deepnn nas report nas/rl-s* nas/random-s* -o nas.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="search folders")
    p.add_argument("-o", "--output", help="PNG to write (default nas.png; none with --update unless given)")
    p.add_argument("--top", type=int, default=10, help="architectures in the table (default 10)")
    p.add_argument("--update", metavar="FILE",
                   help="replace the block of FILE marked as generated by this very command (docs/results.md)")
    p.set_defaults(func=run_report_cmd)


def child_config(config: str | None, overrides: list[str]) -> Config:
    """The children's training config: the proxy defaults, then --config, then --set (as ``deepnn train``)."""
    from ..nas.runner import proxy_config

    cfg = proxy_config()
    if config is not None:
        d = load_yaml(config)
        named = d.get("model", {}).get("name", "nas_child") if isinstance(d.get("model"), dict) else "nas_child"
        if named != "nas_child":
            raise UserError(f"{config} is a config for model {named!r}; a search trains nas_child children")
        merge_into(cfg, d, str(config))
    apply_overrides(cfg, overrides)
    if cfg.model.name != "nas_child":
        raise UserError(f"a search trains nas_child children; drop model.name={cfg.model.name}")
    if "arch" in cfg.model.args:
        raise UserError("the search chooses model.args.arch for each child; drop it from --config/--set")
    cfg.validate()
    return cfg


def run_search_cmd(args: argparse.Namespace) -> int:
    import dataclasses as dc

    from ..nas.runner import SearchSettings, run_search

    if args.ray_address is not None and args.backend != "ray":
        raise UserError("--ray-address needs --backend ray")
    settings = SearchSettings()
    for flag in ("trials", "workers", "strategy", "seed", "archs_per_update", "controller_lr", "entropy_weight",
                 "max_params", "max_flops", "over_budget"):
        if getattr(args, flag) is not None:
            setattr(settings, flag, getattr(args, flag))
    if args.layers is not None:
        settings.space["num_layers"] = args.layers
    if args.filters is not None:
        try:
            settings.space["filters"] = tuple(int(f) for f in args.filters.split(","))
        except ValueError:
            raise UserError(f"--filters takes comma-separated integers such as 16,32,64, "
                            f"got {args.filters!r}") from None
    if args.resume:
        changed = [f for f in ("strategy", "seed", "archs_per_update", "controller_lr", "entropy_weight",
                               "max_params", "max_flops", "over_budget", "layers", "filters", "config")
                   if getattr(args, f) is not None]
        if changed or args.overrides:
            raise UserError("a resumed search keeps its own settings; drop " + ", ".join(
                [f"--{c.replace('_', '-')}" for c in changed] + ["--set"] * bool(args.overrides)))
        child = None
        if args.trials is None or args.workers is None:
            saved = json.loads((Path(args.out) / "settings.json").read_text()) \
                if (Path(args.out) / "settings.json").is_file() else {"search": dc.asdict(settings)}
            settings.trials = args.trials or saved["search"]["trials"]
            settings.workers = args.workers or saved["search"]["workers"]
    else:
        settings.check()
        child = child_config(args.config, args.overrides)
    width = len(str(settings.trials))

    def progress(r: dict, best: float) -> None:
        if args.quiet:
            return
        how = "cached" if r["cached"] else (f"failed: {r['failure']}" if r["failure"] else f"{r['time_s']:.1f} s")
        print(f"trial {r['trial'] + 1:>{width}}/{settings.trials}  {r['arch']:<40}  reward {r['reward']:.4f}  "
              f"best {best:.4f}  ({how}, {r['worker']})", flush=True)

    records = run_search(args.out, settings, child, resume=args.resume, on_trial=progress, backend=args.backend,
                         ray_address=args.ray_address)
    top = sorted(records, key=lambda r: (-r["reward"], r["trial"]))[:5]
    print(f"{len(records)} trials in {args.out}/trials.jsonl; best architectures (validation accuracy):")
    for r in top:
        print(f"  {r['reward']:.4f}  {r['arch']}  ({r['params']:,} parameters)" if r["params"] is not None
              else f"  {r['reward']:.4f}  {r['arch']}")
    if top:
        print(f"train the best: deepnn train nas_child --set model.args.arch=\"{top[0]['arch']}\"")
    return 0


def run_report_cmd(args: argparse.Namespace) -> int:
    from ..analysis.results import update_generated
    from ..nas.report import report

    output = args.output or (None if args.update else "nas.png")
    text = report(args.dirs, output, top=args.top)
    print(text)
    if output:
        print(f"wrote {output}")
    if args.update:
        # the block's marker names the command without -o / --update, as `deepnn results` does
        flags = [] if args.top == 10 else ["--top", str(args.top)]
        changed = update_generated(args.update, shlex.join(["deepnn", "nas", "report", *flags, *args.dirs]), text)
        print(f"{'updated' if changed else 'unchanged:'} {args.update}")
    return 0


def check_out(name: str) -> None:
    """Raise a one-line UserError unless the JSON record can be written to the file ``name``."""
    out = Path(name)
    folder = out.parent
    if out.is_dir() or name.endswith(("/", os.sep)):
        raise UserError(f"--out {name} names a folder; give a file name such as {out / 'nas.json'}")
    if not folder.is_dir():
        raise UserError(f"--out {out}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--out {out}: cannot write there (permission denied); choose a writable path")


def run(args: argparse.Namespace) -> int:
    for flag in ("steps", "layers", "epochs", "batch_size", "val_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.train_subset < args.batch_size:
        raise UserError(f"--train-subset ({args.train_subset}) must be at least --batch-size ({args.batch_size}), "
                        "or a child gets no training batch")
    for flag in ("lr", "controller_lr"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.out:
        check_out(args.out)  # before the search, not after minutes of it
    space = SearchSpace(num_layers=args.layers)
    cfg = Config()
    cfg.data.train_subset, cfg.data.batch_size, cfg.data.val_size = args.train_subset, args.batch_size, args.val_size
    cfg.optim.lr = args.lr
    cfg.train.epochs, cfg.train.seed, cfg.train.device, cfg.train.progress = args.epochs, args.seed, args.device, False
    data = load_image_data(data_dir=args.data_dir, val_size=args.val_size, seed=args.seed)

    def report(s: Step) -> None:
        print(f"step {s.step:>3}/{args.steps}  {s.arch:<{8 * args.layers}}  reward {s.reward:.4f}  "
              f"baseline {s.baseline:.4f}{'  (cached)' if s.cached else ''}", flush=True)

    result = search(lambda arch: child_reward(arch, space, data, cfg), space, args.steps, lr=args.controller_lr,
                    seed=args.seed, on_step=report)
    print(f"best architecture: {result.best.arch}  (validation accuracy {result.best.reward:.4f}, "
          f"step {result.best.step})")
    print(f"controller's most likely architecture: {result.greedy_arch}")
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
        record = {"settings": settings, "history": [dataclasses.asdict(s) for s in result.history],
                  "best": dataclasses.asdict(result.best), "greedy_arch": result.greedy_arch}
        try:
            Path(args.out).write_text(json.dumps(record, indent=1))
        except OSError as e:
            raise UserError(f"cannot write --out {args.out}: {e.strerror or e}") from None
        print(f"wrote {args.out}")
    return 0
