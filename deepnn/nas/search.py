"""Architecture search with REINFORCE (Williams 1992), as in Zoph & Le 2016 (lecture item C20).

Each step: the controller samples an architecture, the child it describes is trained and its
validation accuracy is the reward ``R``, and the controller takes one gradient step on
``−(R − b) · log p(arch)``: architectures that beat the baseline ``b`` become more likely, those
below it less likely. Rewards of architectures seen before are reused, not retrained.

:func:`child_reward` is the real reward (a short run of :class:`~deepnn.train.Trainer` on
Fashion-MNIST); any ``reward_fn(arch) -> float`` works, e.g. a synthetic one in the tests:

    >>> space = SearchSpace(num_layers=1)
    >>> result = search(lambda arch: float(arch == [2, 2]), space, steps=200)
    >>> result.greedy_arch
    '5x5-32'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data import ImageData
from ..errors import UserError
from ..runs import build_training
from ..train.config import Config
from .controller import Controller, SearchSpace, build_child


@dataclass
class Step:
    """One step of :func:`search`: the sampled arch (tokens and ``"3x3-16 5x5-32"`` form), its reward,
    the baseline it was compared with, and whether the reward came from the cache."""

    step: int
    tokens: list[int]
    arch: str
    reward: float
    baseline: float
    cached: bool


@dataclass
class SearchResult:
    """What :func:`search` returns: every step, the best arch sampled, and the controller's greedy arch
    after the last update (its current belief)."""

    history: list[Step]
    best: Step
    greedy_arch: str


def reinforce_step(controller: Controller, optimizer: torch.optim.Optimizer, log_prob: torch.Tensor,
                   reward: float, baseline: float, entropy: torch.Tensor | None = None,
                   entropy_weight: float = 0.0) -> float:
    """One REINFORCE update (Williams 1992) with a baseline, as in Zoph & Le 2016, eq. 2.

    The policy gradient of the expected reward ``J(θ) = E_{a∼p_θ}[R(a)]`` is estimated from one
    sampled architecture ``a = (a_1 … a_T)``::

        ∇_θ J ≈ (R − b) · Σ_t ∇_θ log p_θ(a_t | a_<t)

    Subtracting a baseline ``b`` that does not depend on ``a`` leaves the estimate unbiased and lowers
    its variance; the sign of ``R − b`` decides whether ``a`` becomes more or less likely. We minimise
    ``loss = −(R − b) · log p(a) − β · H`` (``H`` the summed entropy, ``β`` = ``entropy_weight``, a bonus
    that keeps the controller exploring).

    Args:
        controller: the policy; ``log_prob`` (a scalar ``()``) and ``entropy`` come from its ``sample``.
        optimizer: over the controller's parameters.
        reward: ``R``.
        baseline: ``b``.

    Returns:
        The loss, a float.
    """
    loss = -(reward - baseline) * log_prob
    if entropy is not None and entropy_weight:
        loss = loss - entropy_weight * entropy
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def search(
    reward_fn: Callable[[list[int]], float],
    space: SearchSpace,
    steps: int,
    *,
    lr: float = 0.01,
    baseline_decay: float = 0.8,
    entropy_weight: float = 0.01,
    hidden_size: int = 32,
    seed: int = 0,
    on_step: Callable[[Step], None] | None = None,
) -> SearchResult:
    """Sample → reward → update, ``steps`` times (Zoph & Le 2016, one child per step).

    The baseline is an exponential moving average of past rewards, ``b ← d·b + (1 − d)·R`` after each
    step (``d`` = ``baseline_decay``), started at the first reward, so the first step's REINFORCE term is
    zero (only the entropy bonus acts).

    Args:
        reward_fn: ``arch tokens -> R``; called once per distinct architecture (results are cached).
        space: the :class:`SearchSpace`.
        steps: number of sampled architectures (and controller updates).
        lr: Adam's learning rate for the controller.
        baseline_decay: ``d`` in ``[0, 1)``.
        entropy_weight: ``β`` of :func:`reinforce_step`.
        hidden_size: the controller's ``H``.
        seed: seeds the controller's weights and its draws; the search is deterministic given it
            (and a deterministic ``reward_fn``).
        on_step: called with each :class:`Step` as soon as it is done (progress printing).

    Returns:
        A :class:`SearchResult`.
    """
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if not 0 <= baseline_decay < 1:
        raise UserError(f"baseline_decay must lie in [0, 1), got {baseline_decay}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controller = Controller(space, hidden_size)
    optimizer = torch.optim.Adam(controller.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    cache: dict[tuple[int, ...], float] = {}
    history: list[Step] = []
    baseline: float | None = None
    for step in range(1, steps + 1):
        tokens, log_prob, entropy = controller.sample(generator)
        cached = tuple(tokens) in cache
        if not cached:
            cache[tuple(tokens)] = float(reward_fn(tokens))
        reward = cache[tuple(tokens)]
        baseline = reward if baseline is None else baseline
        reinforce_step(controller, optimizer, log_prob, reward, baseline, entropy, entropy_weight)
        history.append(Step(step, tokens, space.to_string(tokens), reward, baseline, cached))
        baseline = baseline_decay * baseline + (1 - baseline_decay) * reward
        if on_step is not None:
            on_step(history[-1])
    best = max(history, key=lambda s: s.reward)  # the first of equals
    return SearchResult(history, best, space.to_string(controller.greedy()))


def child_reward(arch: Sequence[int], space: SearchSpace, data: ImageData, cfg: Config) -> float:
    """The reward of Zoph & Le 2016: train the child ``arch`` describes, return its validation accuracy.

    The child trains through :func:`~deepnn.runs.build_training`, the function ``deepnn train`` uses,
    so every setting of ``cfg`` applies as it would there (label smoothing, schedule, precision, ...):
    ``cfg.train.epochs`` epochs on the first ``cfg.data.train_subset`` training images (all when
    ``None``). Returns the best validation accuracy in ``[0, 1]`` on ``data.val`` (never the test split).
    The child's initial weights come from ``cfg.train.seed`` (in a forked RNG state, so the caller's
    global RNG is untouched).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        c, h, _ = data.input_shape
        model = build_child(arch, space, in_channels=c, num_classes=len(data.classes), input_size=h)
        trainer = build_training(cfg, data=data, model=model).trainer
        trainer.fit()
    return float(trainer.best_val)
