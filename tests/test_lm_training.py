"""The language-model task through the one Trainer: best on validation loss, exact resume with the
hidden state carried across batches, step checkpoints, time budgets, NaN stops, SIGTERM."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from deepnn.data.text import CharVocab, SequentialTextLoader
from deepnn.train import Config, Diverged, LanguageModelTask, Trainer, apply_overrides, load_checkpoint
from deepnn.train.tasks import language_model_metrics

TEXT = ("the quick brown fox jumps over the lazy dog. " * 40 + "pack my box with five dozen liquor jugs. " * 40)


class TinyLM(nn.Module):
    """Embedding → GRU → linear; ``forward(tokens (B, T), state) -> (logits (B, T, V), state)``."""

    def __init__(self, vocab: int, hidden: int = 16) -> None:
        super().__init__()
        self.embed, self.rnn, self.out = nn.Embedding(vocab, 8), nn.GRU(8, hidden, batch_first=True), nn.Linear(
            hidden, vocab)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        h, state = self.rnn(self.embed(tokens), state)
        return self.out(h), state


def lm_trainer(run_dir: Path | None, *overrides: str, hooks=()) -> Trainer:
    torch.manual_seed(0)
    vocab = CharVocab.from_text(TEXT)
    tokens = vocab.encode(TEXT)
    cut = int(len(tokens) * 0.9)
    cfg = apply_overrides(Config(), ["train.progress=false", "train.epochs=3", "optim.lr=0.01", *overrides])
    train = SequentialTextLoader(tokens[:cut], 4, 16, seed=0)
    val = SequentialTextLoader(tokens[cut:], 2, 16, random_offset=False)
    return Trainer(TinyLM(len(vocab)), LanguageModelTask(), train, val, cfg=cfg, run_dir=run_dir, hooks=hooks)


class At:
    """Hook: call ``fn(trainer)`` after step ``step``."""

    def __init__(self, step: int, fn) -> None:
        self.step, self.fn = step, fn

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.step:
            self.fn(trainer)


def test_perplexity_is_exp_of_mean_cross_entropy_by_hand() -> None:
    # two tokens with probabilities 1/2 and 1/4 of the right answer: mean CE = (ln 2 + ln 4) / 2 = 1.5 ln 2
    logits = torch.log(torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]]) + 1e-30)
    task = LanguageModelTask()

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor, state: object = None):
            return logits, None

    model = Fixed()
    m = task.evaluate(model, [(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 3]]), False)])
    assert m["loss"] == pytest.approx(1.5 * math.log(2), rel=1e-6)
    assert m["perplexity"] == pytest.approx(2 ** 1.5, rel=1e-6)  # exp(1.5 ln 2) = 2.83
    assert m["bits_per_char"] == pytest.approx(1.5, rel=1e-6)
    assert language_model_metrics(3.0, 1.0, 2.0)["accuracy"] == 0.5


def test_best_is_the_lowest_validation_loss(tmp_path: Path) -> None:
    trainer = lm_trainer(tmp_path, "train.epochs=4")
    history = trainer.fit()
    losses = [r["val_loss"] for r in history]
    assert trainer.best_val == min(losses)
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert best.meta["history"][-1]["val_loss"] == min(losses)  # saved at the record with the lowest loss
    assert losses[0] > losses[-1]  # it learns


def test_state_is_carried_across_batches_and_detached() -> None:
    trainer = lm_trainer(None, "train.epochs=1")
    seen = []
    real = trainer.model.forward

    def spy(tokens, state=None):
        seen.append(state)
        return real(tokens, state)

    trainer.model.forward = spy
    trainer.fit()
    assert seen[0] is None and all(s is not None for s in seen[1:len(trainer.train_loader)])
    assert all(not s.requires_grad for s in seen[1:len(trainer.train_loader)])  # cut from the previous graph


def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = lm_trainer(tmp_path / "a")
    whole.fit()

    def interrupt(t: Trainer) -> None:
        t._interrupted = True  # what Ctrl-C does

    n = len(whole.train_loader)
    first = lm_trainer(tmp_path / "b", hooks=[At(n + 3, interrupt)])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert load_checkpoint(tmp_path / "b").task  # the hidden state is in the checkpoint
    resumed = lm_trainer(tmp_path / "b")
    resumed.resume(tmp_path / "b")
    assert resumed.step_in_epoch == 3 and resumed.task.state is not None
    resumed.fit()
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert [r["val_loss"] for r in whole.history] == [r["val_loss"] for r in resumed.history]


def test_resume_without_the_carried_state_differs(tmp_path: Path) -> None:
    """The test above fails if the state is not restored: dropping it changes the result."""
    whole = lm_trainer(tmp_path / "a")
    whole.fit()
    n = len(whole.train_loader)
    first = lm_trainer(tmp_path / "b", hooks=[At(n + 3, lambda t: setattr(t, "_interrupted", True))])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = lm_trainer(tmp_path / "b")
    resumed.resume(tmp_path / "b")
    resumed.task.state = None
    resumed.fit()
    assert not torch.equal(whole.model.out.weight, resumed.model.out.weight)


def test_validation_and_last_checkpoint_every_n_steps(tmp_path: Path) -> None:
    trainer = lm_trainer(tmp_path, "train.epochs=1", "train.val_every_steps=4")
    n = len(trainer.train_loader)
    history = trainer.fit()
    steps = [r["step"] for r in history]
    assert steps == [*range(4, n, 4), n]
    assert all("val_loss" in r for r in history)
    assert history[0]["epoch"] == pytest.approx(4 / n, abs=1e-4)


def test_time_budget_plans_the_schedule_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Trainer, "BUDGET_PROBE_S", 0.05)
    trainer = lm_trainer(tmp_path, "train.epochs=1000", "train.max_minutes=0.02", "sched.name=cosine")
    trainer.fit()
    assert trainer.budget_planned and trainer.planned_steps < 1000 * len(trainer.train_loader)
    assert trainer.train_time < 0.02 * 60 * 1.5 + 0.5
    assert trainer.stop and trainer.history  # a record (validation + checkpoints) at the end
    assert trainer.optimizer.param_groups[0]["lr"] < 0.01 * 0.2  # the cosine ran (nearly) its course


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = lm_trainer(tmp_path, "train.epochs=2")
    n = len(trainer.train_loader)

    def poison(t: Trainer) -> None:
        with torch.no_grad():
            t.model.out.bias.fill_(float("nan"))

    trainer.hooks.append(At(n + 2, poison))
    with pytest.raises(Diverged, match="diverged"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "last.safetensors")
    assert last.meta["global_step"] == n  # the end of epoch 1, not overwritten with NaN weights
    assert all(torch.isfinite(v).all() for v in last.model.values())


def test_sigterm_saves_and_stops_like_ctrl_c(tmp_path: Path) -> None:
    trainer = lm_trainer(tmp_path, hooks=[At(5, lambda t: signal.raise_signal(signal.SIGTERM))])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.safetensors").meta["global_step"] == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_time_budget_replans_when_the_machine_slows_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(Trainer, "BUDGET_PROBE_S", 0.05)

    class SlowDown:  # from step 40 on, every step takes 10 ms longer (another job starts on the machine)
        plans: list[int] = []

        def on_step_end(self, trainer: Trainer) -> None:
            if trainer.global_step >= 40:
                time.sleep(0.01)

        def on_epoch_end(self, trainer: Trainer, metrics: dict) -> None:
            self.plans.append(trainer.planned_steps)

    slow = SlowDown()
    trainer = lm_trainer(tmp_path, "train.epochs=1000", "train.max_minutes=0.05", "sched.name=cosine",
                         "train.val_every_steps=20", hooks=[slow])
    trainer.fit()
    assert len(slow.plans) >= 3 and slow.plans[-1] < slow.plans[0]  # planned again, fewer steps fit
    # the schedule ends where training ended (to 2 %: the speed may still change after the last plan)
    assert abs(trainer.global_step - slow.plans[-1]) <= max(1, 0.02 * slow.plans[-1])
    assert trainer.train_time < 0.05 * 60 * 1.3
