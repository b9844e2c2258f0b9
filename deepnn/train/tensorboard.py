"""TensorBoard logging as a trainer hook (``deepnn train ... --tensorboard``, ``train.tensorboard``).

Event files go to ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``):

* every ``train.tensorboard_every_steps`` steps: ``train/step_loss`` (this process's batch loss; one
  host sync per N steps);
* every record (epoch end, ``train.val_every_*``): ``train/<metric>`` and ``val/<metric>`` for each of
  the task's metrics (loss, accuracy, perplexity, ...), ``lr`` and ``throughput/<unit>_per_s``;
* language models: a short text sample from the evaluated weights at each record
  (:func:`deepnn.decoding.generate`, seeded, so runs are comparable);
* image classification: a grid of a few validation images with their predicted and true labels at
  each record (``val/predictions``).

Only rank 0 of a data-parallel run writes. Needs the ``tensorboard`` package
(``pip install 'deepnn[tensorboard]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line UserError naming the extra to install."""
    try:
        import tensorboard  # noqa: F401 - torch's writer needs it
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard (train.tensorboard) needs the tensorboard package: "
                        "pip install 'deepnn[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLogger:
    """Hook: scalars per step and per record, and a sample per record (see the module docstring).

    Args:
        log_dir: the event-file folder (``RUN/tensorboard``).
        every_steps: log the training loss every this many steps.
        sample: ``sample(trainer) -> str``: text logged as ``sample`` at each record (language models).
        images: ``images(trainer) -> (images (N, C, H, W) in [0, 1], caption)``: logged as ``val/predictions``.
    """

    def __init__(self, log_dir: str | Path, every_steps: int = 10,
                 sample: Callable[[Any], str] | None = None,
                 images: Callable[[Any], tuple[torch.Tensor, str]] | None = None) -> None:
        self.log_dir, self.every_steps = Path(log_dir), every_steps
        self.sample, self.images = sample, images
        self.writer_class = summary_writer_class()
        self.writer: Any = None

    def on_fit_start(self, trainer: Any) -> None:
        if getattr(trainer, "is_main", True) and self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.log_dir))

    def on_step_end(self, trainer: Any) -> None:
        if self.writer is not None and trainer.global_step % self.every_steps == 0 and trainer.last_loss is not None:
            self.writer.add_scalar("train/step_loss", float(trainer.last_loss), trainer.global_step)

    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step, unit = metrics["step"], trainer.task.unit
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == f"train_{unit}_per_s":
                self.writer.add_scalar(f"throughput/{unit}_per_s", value, step)
            elif key == "lr":
                self.writer.add_scalar("lr", value, step)
            elif key.startswith(("train_", "val_")) and "time" not in key:
                split, name = key.split("_", 1)
                self.writer.add_scalar(f"{split}/{name}", value, step)
        if self.sample is not None:
            self.writer.add_text("sample", self.sample(trainer), step)
        if self.images is not None:
            grid, caption = self.images(trainer)
            self.writer.add_images("val/predictions", grid, step)
            self.writer.add_text("val/predictions", caption, step)
        self.writer.flush()

    def on_fit_end(self, trainer: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def text_sampler(vocab: Any, prompt: str, length: int = 120, seed: int = 0) -> Callable[[Any], str]:
    """``sample(trainer)``: ``prompt`` continued by ``length`` sampled characters (top-k 10, seeded)."""
    from ..decoding import generate

    ids = vocab.encode(prompt, "the TensorBoard prompt")

    def sample(trainer: Any) -> str:
        model = trainer.eval_model
        g = torch.Generator(device=trainer.device).manual_seed(seed)
        out = generate(model, ids.to(trainer.device).unsqueeze(0), length, top_k=10, generator=g)
        return "    " + (prompt + vocab.decode(out[0])).replace("\n", "\n    ")  # markdown: a code block

    return sample


def image_predictions(x: torch.Tensor, y: torch.Tensor, classes: list[str], mean: Any, std: Any
                      ) -> Callable[[Any], tuple[torch.Tensor, str]]:
    """``images(trainer)``: the images ``x`` (normalised, ≤ 16) un-normalised to [0, 1], and a caption
    with the predicted and true class of each."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @torch.no_grad()
    def images(trainer: Any) -> tuple[torch.Tensor, str]:
        model = trainer.eval_model
        was_training = model.training
        model.eval()
        with trainer.autocast():
            out = model(x.to(trainer.device))
        model.train(was_training)
        pred = (out[0] if isinstance(out, tuple) else out).float().argmax(1).cpu()
        caption = "  \n".join(f"{i}: predicted **{classes[p]}**, true {classes[t]}"
                              for i, (p, t) in enumerate(zip(pred.tolist(), y.tolist())))
        return (x.cpu().float() * std_t + mean_t).clamp(0, 1), caption

    return images
