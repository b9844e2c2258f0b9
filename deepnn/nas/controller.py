"""The search space and the LSTM controller of Zoph & Le 2016, "Neural architecture search with
reinforcement learning" (lecture item C20), shrunk for a CPU.

Two spaces: :class:`SearchSpace`, the lecture's first loop, and :class:`ChildSpace`, the paper's
CNN space (filter height and width, filters, stride, skip connections chosen at anchor points) over
the registered ``nas_child`` model. In :class:`SearchSpace` an architecture is a list of token ids, two
per convolution layer: the index of its filter size
and the index of its number of filters (the paper also chooses strides and skip connections; we
keep the two choices of its simplest CNN experiment). The controller emits them one at a time,
each from a softmax over that decision's choices, and feeds the chosen token's embedding back in
as its next input (the paper's Fig. 1).

    >>> space = SearchSpace(num_layers=2)
    >>> space.to_string([1, 1, 2, 2])
    '3x3-16 5x5-32'
    >>> arch, log_prob, entropy = Controller(space).sample(torch.Generator().manual_seed(0))
    >>> len(arch), log_prob.shape, entropy.shape
    (4, torch.Size([]), torch.Size([]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ..errors import UserError
from ..models.nas_child import LayerSpec, format_arch, parse_arch


@dataclass(frozen=True)
class SearchSpace:
    """A CNN of ``num_layers`` conv layers, each choosing a filter size and a number of filters.

    The decisions, in the controller's order, alternate ``filter_sizes``, ``num_filters``, ... so an
    architecture is ``2 · num_layers`` token ids; token ``t`` indexes ``choices(t)``.
    """

    num_layers: int = 2
    filter_sizes: tuple[int, ...] = (1, 3, 5)
    num_filters: tuple[int, ...] = (8, 16, 32)

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise UserError(f"the search space needs at least 1 conv layer, got num_layers={self.num_layers}")
        if not self.filter_sizes or not self.num_filters:
            raise UserError("filter_sizes and num_filters each need at least one choice")
        if any(k < 1 or k % 2 == 0 for k in self.filter_sizes):
            raise UserError(f"filter sizes must be odd and positive (same padding), got {self.filter_sizes}")

    @property
    def num_decisions(self) -> int:
        return 2 * self.num_layers

    def choices(self, t: int) -> tuple[int, ...]:
        """The options of decision ``t``: filter sizes at even ``t``, numbers of filters at odd ``t``."""
        return self.filter_sizes if t % 2 == 0 else self.num_filters

    def layers(self, arch: Sequence[int]) -> list[tuple[int, int]]:
        """``(filter size, number of filters)`` per conv layer; a malformed ``arch`` is a UserError."""
        if len(arch) != self.num_decisions:
            raise UserError(f"an architecture of this space has {self.num_decisions} tokens, got {len(arch)}")
        for t, token in enumerate(arch):
            if not 0 <= token < len(self.choices(t)):
                raise UserError(f"token {t} must lie in [0, {len(self.choices(t))}), got {token}")
        return [(self.filter_sizes[arch[i]], self.num_filters[arch[i + 1]]) for i in range(0, len(arch), 2)]

    def to_string(self, arch: Sequence[int]) -> str:
        """Readable form, one ``KxK-N`` per layer: ``[1, 1, 2, 2]`` → ``"3x3-16 5x5-32"``."""
        return " ".join(f"{k}x{k}-{n}" for k, n in self.layers(arch))

    def plan(self) -> list[Decision]:
        """The controller's steps: one softmax per token."""
        return [Decision(len(self.choices(t))) for t in range(self.num_decisions)]

    def check(self, arch: Sequence[int]) -> None:
        self.layers(arch)


@dataclass(frozen=True)
class Decision:
    """One step of the controller: a softmax over ``choices`` options (one token), or, with
    ``anchor`` set, the anchor point of 1-based conv layer ``anchor`` that decides one skip bit per
    earlier layer in ``skips_from`` (Zoph & Le 2017, section 3.3)."""

    choices: int = 0
    anchor: int | None = None
    skips_from: tuple[int, ...] = ()


@dataclass(frozen=True)
class ChildSpace:
    """Zoph & Le's CNN space (section 3.3), shrunk for a CPU: per conv layer a filter height, a filter
    width, a number of filters, a stride, and skip connections from earlier layers, for children of
    :mod:`deepnn.models.nas_child` (the ``nas_child`` model; architecture strings such as
    ``"3x5-32/2[1]"``).

    Tokens per layer ``i`` (1-based): indices into ``heights``, ``widths``, ``filters``, ``strides``, then
    one bit per earlier layer ``j = 1 .. i − 2`` (1: concatenate layer ``j``'s output to layer ``i``'s
    input). ``max_layers`` layers.

        >>> space = ChildSpace(num_layers=3)
        >>> space.to_string([1, 1, 0, 1,  2, 0, 1, 0,  0, 0, 2, 1, 1])
        '3x3-16/2 5x1-32 1x1-64/2[1]'
    """

    num_layers: int = 4
    heights: tuple[int, ...] = (1, 3, 5, 7)
    widths: tuple[int, ...] = (1, 3, 5, 7)
    filters: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise UserError(f"the search space needs at least 1 conv layer, got num_layers={self.num_layers}")
        for name in ("heights", "widths", "filters", "strides"):
            values = getattr(self, name)
            if not values or any(v < 1 for v in values):
                raise UserError(f"the search space's {name} need at least one positive choice, got {values}")
        if any(k % 2 == 0 for k in (*self.heights, *self.widths)):
            raise UserError(f"filter heights and widths must be odd (same padding), got {self.heights}, {self.widths}")

    def plan(self) -> list[Decision]:
        steps: list[Decision] = []
        for i in range(1, self.num_layers + 1):
            steps += [Decision(len(self.heights)), Decision(len(self.widths)), Decision(len(self.filters)),
                      Decision(len(self.strides)), Decision(anchor=i, skips_from=tuple(range(1, i - 1)))]
        return steps

    @property
    def num_decisions(self) -> int:
        return sum(1 if d.anchor is None else len(d.skips_from) for d in self.plan())

    def check(self, arch: Sequence[int]) -> None:
        """Raise a one-line UserError unless ``arch`` is a token list of this space."""
        if len(arch) != self.num_decisions:
            raise UserError(f"an architecture of this space has {self.num_decisions} tokens, got {len(arch)}")
        t = 0
        for d in self.plan():
            limits = [d.choices] if d.anchor is None else [2] * len(d.skips_from)
            for n in limits:
                if not 0 <= arch[t] < n:
                    raise UserError(f"token {t} must lie in [0, {n}), got {arch[t]}")
                t += 1

    def layers(self, arch: Sequence[int]) -> list[LayerSpec]:
        """The :class:`~deepnn.models.nas_child.LayerSpec` of each conv layer."""
        self.check(arch)
        out, t = [], 0
        for i in range(1, self.num_layers + 1):
            h, w, n, s = arch[t:t + 4]
            t += 4
            skips = tuple(j for j in range(1, i - 1) if arch[t + j - 1])
            t += max(i - 2, 0)
            out.append(LayerSpec(self.heights[h], self.widths[w], self.filters[n], self.strides[s], skips))
        return out

    def to_string(self, arch: Sequence[int]) -> str:
        """The architecture string ``deepnn train nas_child --set model.args.arch=...`` takes."""
        return format_arch(self.layers(arch))

    def from_string(self, text: str) -> list[int]:
        """Tokens of an architecture string of this space (the inverse of :meth:`to_string`)."""
        specs = parse_arch(text)
        if len(specs) != self.num_layers:
            raise UserError(f"this search space has {self.num_layers} layers, the architecture {len(specs)}")
        tokens: list[int] = []
        for i, spec in enumerate(specs, start=1):
            for value, options, name in ((spec.height, self.heights, "filter height"),
                                         (spec.width, self.widths, "filter width"),
                                         (spec.filters, self.filters, "number of filters"),
                                         (spec.stride, self.strides, "stride")):
                if value not in options:
                    raise UserError(f"layer {i}: {name} {value} is not in this search space's {options}")
                tokens.append(options.index(value))
            tokens += [int(j in spec.skips) for j in range(1, i - 1)]
        return tokens

    def random(self, generator: torch.Generator) -> list[int]:
        """A uniformly random architecture (random search): every option, and every skip bit, equally likely."""
        tokens: list[int] = []
        for d in self.plan():
            n = d.choices if d.anchor is None else 2
            for _ in range(1 if d.anchor is None else len(d.skips_from)):
                tokens.append(int(torch.randint(n, (), generator=generator)))
        return tokens


def build_child(arch: Sequence[int], space: SearchSpace, in_channels: int = 1, num_classes: int = 10,
                input_size: int = 28) -> nn.Module:
    """The child network an architecture describes.

    Each layer is ``KxK`` conv (stride 2, same padding, no bias) → batch norm → ReLU, so every layer
    halves the resolution and children stay cheap on a CPU (28 → 14 → 7 for two layers); then a linear
    classifier on the flattened maps. (Global average pooling, C15, starves children this shallow: on
    2,000 images for one epoch it gave 0.20–0.48 validation accuracy against 0.65–0.80 with the flattened
    maps, and the reward then measures the pooling more than the architecture.)
    Input ``(B, in_channels, input_size, input_size)`` → logits ``(B, num_classes)``.
    """
    blocks: list[nn.Module] = []
    channels, size = in_channels, input_size
    for k, n in space.layers(arch):
        blocks += [L.Conv2d(channels, n, kernel_size=k, stride=2, padding=k // 2, bias=False),
                   nn.BatchNorm2d(n), nn.ReLU()]  # (B, n, ⌈size/2⌉, ⌈size/2⌉)
        channels, size = n, (size + 1) // 2
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(channels * size * size, num_classes))  # (B, num_classes)


class Controller(nn.Module):
    """The recurrent controller of Zoph & Le 2017 (Fig. 1 and Fig. 4): an LSTM (our
    :class:`~deepnn.layers.LSTMCell`, R5) that writes an architecture one token at a time.

    ::

        x_0 = start                               learned input of the first step   (H,)
        h_t, c_t = LSTM(x_t, (h_{t-1}, c_{t-1}))                                     (H,) each
        p(a_t | a_<t) = softmax(W_t h_t + b_t)    one classifier per decision t      (choices_t,)
        x_{t+1} = E_t[a_t]                        embedding of the chosen token     (H,)

    so ``log p(arch) = Σ_t log p(a_t | a_<t)``, the quantity REINFORCE differentiates.

    Skip connections (a space with anchor steps, :class:`ChildSpace`): after layer ``i``'s four
    choices the LSTM takes one more step, the *anchor point* of layer ``i``, whose hidden state ``a_i``
    is kept. Layer ``j`` feeds layer ``i`` with probability (the paper's section 3.3)::

        P(j → i) = sigmoid(vᵀ tanh(W_prev a_j + W_curr a_i))                        one bit per j ≤ i − 2

    each bit adds ``log P`` or ``log(1 − P)`` to ``log p(arch)`` and its binary entropy to the entropy;
    the next step's input is ``a_i`` plus the mean of the chosen ``a_j``.

    Args:
        space: the :class:`SearchSpace` or :class:`ChildSpace` whose tokens it emits.
        hidden_size: ``H`` (the paper: 35 units in each of two layers; one layer here).
    """

    def __init__(self, space: SearchSpace | ChildSpace, hidden_size: int = 32) -> None:
        super().__init__()
        self.space = space
        self.plan = space.plan()
        self.cell = L.LSTMCell(hidden_size, hidden_size)
        self.start = nn.Parameter(torch.zeros(hidden_size))
        decisions = [d.choices for d in self.plan if d.anchor is None]
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in decisions)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in decisions)
        if any(d.anchor is not None for d in self.plan):  # created last: the choice layers keep their init
            self.w_prev = nn.Linear(hidden_size, hidden_size, bias=False)
            self.w_curr = nn.Linear(hidden_size, hidden_size, bias=False)
            self.v = nn.Linear(hidden_size, 1, bias=False)

    def _unroll(self, choose: Callable[[int, torch.Tensor], int]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Run the decisions, ``choose(t, log_probs) -> token``: for a softmax ``log_probs`` is
        ``(choices_t,)``, for a skip bit ``(2,)`` = ``(log(1 − P), log P)``; returns the tokens, the sum of
        their log-probabilities and the sum of the per-decision entropies (scalars with gradients)."""
        x, state = self.start, None
        arch, log_prob, entropy = [], self.start.new_zeros(()), self.start.new_zeros(())
        anchors: dict[int, torch.Tensor] = {}  # layer -> a_i (H,)
        k = 0  # index of the next softmax decision
        for d in self.plan:
            state = self.cell(x, state)  # (h, c), (H,) each
            if d.anchor is None:
                log_p = F.log_softmax(self.heads[k](state[0]), dim=-1)  # (choices_t,)
                token = choose(len(arch), log_p)
                x = self.embeddings[k].weight[token]  # (H,), the token fed back in
                k += 1
                arch.append(token)
                log_prob = log_prob + log_p[token]
                entropy = entropy - (log_p.exp() * log_p).sum()
                continue
            a_i = anchors[d.anchor] = state[0]  # (H,)
            chosen = []
            for j in d.skips_from:
                score = self.v(torch.tanh(self.w_prev(anchors[j]) + self.w_curr(a_i)))[0]  # ()
                log_p = torch.stack([F.logsigmoid(-score), F.logsigmoid(score)])  # (2,): no skip, skip
                bit = choose(len(arch), log_p)
                arch.append(bit)
                log_prob = log_prob + log_p[bit]
                entropy = entropy - (log_p.exp() * log_p).sum()
                if bit:
                    chosen.append(anchors[j])
            x = a_i + torch.stack(chosen).mean(0) if chosen else a_i  # (H,)
        return arch, log_prob, entropy

    def sample(self, generator: torch.Generator | None = None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Draw an architecture: ``(tokens, Σ_t log p(a_t | a_<t), Σ_t entropy_t)``, the last two scalars
        that carry gradients; ``generator`` makes the draws reproducible."""
        def draw(t: int, log_p: torch.Tensor) -> int:
            return int(torch.multinomial(log_p.detach().exp().cpu(), 1, generator=generator))

        return self._unroll(draw)

    def score(self, arch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(arch), entropy)`` of a given architecture, each token fed back as if it were sampled."""
        self.space.check(arch)  # reject a malformed arch
        _, log_prob, entropy = self._unroll(lambda t, log_p: int(arch[t]))
        return log_prob, entropy

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The most likely token at each decision, fed back in turn (greedy decoding)."""
        return self._unroll(lambda t, log_p: int(log_p.argmax()))[0]
