"""``deepnn eval RUN``: a saved run's metrics on its test split (or validation split, or any text).

By default it reports exactly what the run's ``results.json`` reports: the same weights (the weight
average when the run kept one, else the final weights of ``last.safetensors``), the same split and
the same test-time settings (flip TTA for images). ``--checkpoint best`` scores the best validated
weights instead. The line says which weights were used.

Pictures: ``--confusion-png cm.png`` draws the printed confusion matrix of an image classifier;
``--curves-png curves.png`` redraws the run's training curves from its ``metrics.jsonl`` (the trainer's
``curves.png``, into any path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import TensorLoader, load_image_data
from ..data.text import CharVocab, eval_windows, load_text_data, read_text
from ..errors import UserError
from ..runs import LoadedRun, load_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved run (test split, validation split or any text)",
                       description="Metrics of a run's checkpoint: accuracy, loss and confusion matrix for image "
                                   "classifiers; loss in nats/char, bits/char and perplexity for language models. "
                                   "By default the weights and split that results.json reports.")
    p.add_argument("run", help="run folder (or a .safetensors checkpoint)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="which split (default: test)")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="last (default): the weights results.json reports; best: the best validated weights")
    p.add_argument("--data-dir", help="folder with the dataset files (image runs)")
    p.add_argument("--text", help="language models: score this UTF-8 file (all of it) instead of a split")
    p.add_argument("--pairs", help="translation: score this `source<TAB>target` file instead of a split")
    p.add_argument("--beam", type=int, help="translation: beam width scored beside greedy decoding "
                                            "(default: the run's train.beam_size)")
    p.add_argument("--exposure-bias", action="store_true",
                   help="translation: teacher-forced vs free-running loss and BLEU of the same model (T5)")
    pictures = p.add_argument_group("pictures")
    pictures.add_argument("--confusion-png", metavar="PNG",
                          help="image classifiers: also draw the printed confusion matrix into this PNG")
    pictures.add_argument("--curves-png", metavar="PNG",
                          help="also redraw the run's training curves (loss and metric per epoch, train and "
                               "validation, from its metrics.jsonl) into this PNG")
    p.set_defaults(func=run)


def _check_png(option: str, path: str | None) -> Path | None:
    """``path`` as a Path if it can take a PNG (checked before the evaluation runs), else a UserError."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise UserError(f"{option} {path!r}: the picture is written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise UserError(f"{option} {path!r}: folder {str(out.parent)!r} does not exist; create it first")
    return out


def draw_curves(loaded: LoadedRun, task: object, out: Path) -> None:
    """The run's ``curves.png`` again, from its ``metrics.jsonl``, into ``out``."""
    from ..train.plot import plot_curves, read_metrics

    folder = loaded.path.parent if loaded.path.is_file() else loaded.path
    records = read_metrics(folder / "metrics.jsonl")
    if not records:
        raise UserError(f"{folder} holds no metrics.jsonl records to draw curves from")
    title = f"{loaded.cfg.model.name} on {Path(str(loaded.meta['data'].get('dataset', ''))).name}"
    try:
        plot_curves(records, out, title, task.metric)
    except OSError as e:
        raise UserError(f"cannot write {str(out)!r} ({e.strerror or e}); choose a writable path") from None
    print(f"wrote {out} (training curves, {len(records)} validation records of {folder / 'metrics.jsonl'})")


def format_confusion(confusion: list[list[int]], classes: list[str]) -> str:
    """Rows: true class; columns: predicted class (abbreviated names)."""
    short = [c.split("/")[0][:7] for c in classes]
    lines = ["true \\ pred  " + " ".join(f"{s:>7}" for s in short)]
    for name, row in zip(short, confusion):
        lines.append(f"{name:>11}  " + " ".join(f"{v:>7}" for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run, args.checkpoint)
    cfg, meta = loaded.cfg, loaded.meta
    task = loaded.kind.make_task(cfg, meta["data"])
    head = f"{cfg.model.name} ({loaded.weights} weights of {loaded.path.name}, step {meta['global_step']})"
    confusion_png = _check_png("--confusion-png", args.confusion_png)
    curves_png = _check_png("--curves-png", args.curves_png)
    if confusion_png is not None and loaded.kind.task != "classification":
        raise UserError(f"--confusion-png is for image classifiers; {cfg.model.name} is a {loaded.kind.task} model")
    if loaded.kind.task != "seq2seq" and (args.pairs or args.beam is not None or args.exposure_bias):
        raise UserError(f"--pairs, --beam and --exposure-bias are for translation runs; {cfg.model.name} is a "
                        f"{loaded.kind.task} model")
    if curves_png is not None:
        draw_curves(loaded, task, curves_png)
    if loaded.kind.task == "seq2seq":
        return evaluate_translation(args, loaded, task, head)
    if loaded.kind.task == "language_model":
        vocab = CharVocab.from_list(meta["data"]["vocab"])
        if args.text:
            tokens, what = vocab.encode(read_text(args.text), what=args.text), args.text
        else:
            if args.data_dir:
                raise UserError("--data-dir is for image runs; a language model reads --text FILE")
            data = load_text_data(cfg.data.path, val_fraction=cfg.data.val_fraction,
                                  test_fraction=cfg.data.test_fraction, vocab=vocab)
            tokens, what = (data.test if args.split == "test" else data.val), f"{cfg.data.path} {args.split}"
        if len(tokens) < 2:
            raise UserError(f"{what} holds fewer than 2 characters; nothing to predict")
        m = task.evaluate(loaded.model, eval_windows(tokens, cfg.data.seq_len, cfg.data.batch_size).batches())
        print(f"{head} on {what}: loss {m['loss']:.4f} nats/char  {m['bits_per_char']:.4f} bits/char  "
              f"perplexity {m['perplexity']:.3f}  accuracy {m['accuracy']:.4f}  ({len(tokens)} characters)")
        return 0
    if args.text:
        raise UserError(f"--text is for language models; {cfg.model.name} classifies images")
    data = load_image_data(cfg.data.name, data_dir=args.data_dir or cfg.data.data_dir,
                           val_size=cfg.data.val_size, seed=cfg.train.seed)
    x, y = data.test if args.split == "test" else data.val
    classes = meta["data"]["classes"]
    m = task.evaluate(loaded.model, TensorLoader(x, y, cfg.data.eval_batch_size))
    print(f"{head} on {cfg.data.name} {args.split}: accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}  "
          f"({len(y)} examples{', flip TTA' if cfg.train.tta_flip else ''})")
    print(format_confusion(m["confusion"], classes))
    if confusion_png is not None:
        from ..analysis.confusion import plot_confusion

        title = f"{cfg.model.name}, {cfg.data.name} {args.split}"
        plot_confusion(m["confusion"], classes, confusion_png, title)
        print(f"wrote {confusion_png} (the confusion matrix above)")
    return 0


def evaluate_translation(args: argparse.Namespace, loaded: LoadedRun, task: object, head: str) -> int:
    """Corpus BLEU and chrF (sacrebleu) of greedy decoding and beam search, and the teacher-forced loss."""
    from ..data.pairs import read_pairs

    cfg = loaded.cfg
    if args.text or args.data_dir:
        raise UserError("--text and --data-dir are for language models and image runs; a translation run reads "
                        "--pairs FILE (or its own test/val split)")
    beam = cfg.train.beam_size if args.beam is None else args.beam
    if beam < 1:
        raise UserError(f"--beam must be at least 1 (1 = greedy only), got {beam}")
    if args.pairs:
        f = read_pairs(args.pairs)
        if f.warning():
            print(f"warning: {f.warning()}", file=sys.stderr)
        pairs, what = f.pairs, args.pairs
    else:
        given = cfg.data.valid_path if args.split == "val" else cfg.data.test_path
        pairs = loaded.kind.splits(cfg)[0][args.split]
        what = given or f"{cfg.data.path} {args.split} (cut from its end)"
    beams = (1,) if beam == 1 else (1, beam)
    loader = loaded.kind.evaluation(task.tokenizer, pairs, loaded.model.max_len, cfg.data.max_tokens, None, beams)
    if args.exposure_bias:
        from ..analysis.exposure import exposure_bias

        e = exposure_bias(loaded.model, task.tokenizer, loader.loader.batches(), loader.references)
        print(f"{head} on {what} ({len(pairs)} pairs), exposure bias (T5):")
        for mode, words in (("teacher_forced", "teacher-forced (gold prefix)"),
                            ("free_running", "free-running (own prefix)")):
            print(f"  {words:>29}: loss {e[mode + '_loss']:.4f} nats/token  BLEU {e[mode + '_bleu']:.2f}  "
                  f"chrF {e[mode + '_chrf']:.2f}")
        return 0
    m = task.evaluate(loaded.model, loader.batches())
    print(f"{head} on {what} ({len(pairs)} pairs): loss {m['loss']:.4f}  perplexity {m['perplexity']:.3f}  "
          f"token accuracy {m['accuracy']:.4f} (teacher-forced)")
    for b in beams:
        suffix = "" if b == 1 else f"_beam{b}"
        name = "greedy" if b == 1 else f"beam {b}"
        print(f"  {name:>8}: BLEU {m['bleu' + suffix]:.2f}  chrF {m['chrf' + suffix]:.2f}")
    return 0
