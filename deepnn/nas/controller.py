"""The search space and the LSTM controller of Zoph & Le 2016, "Neural architecture search with
reinforcement learning" (lecture item C20), shrunk for a CPU.

An architecture is a list of token ids, two per convolution layer: the index of its filter size
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
    """The recurrent controller of Zoph & Le 2016 (Fig. 1): an LSTM (our :class:`~deepnn.layers.LSTMCell`,
    R5) that writes an architecture one token at a time.

    ::

        x_0 = start                               learned input of the first step   (H,)
        h_t, c_t = LSTM(x_t, (h_{t-1}, c_{t-1}))                                     (H,) each
        p(a_t | a_<t) = softmax(W_t h_t + b_t)    one classifier per decision t      (choices_t,)
        x_{t+1} = E_t[a_t]                        embedding of the chosen token     (H,)

    so ``log p(arch) = Σ_t log p(a_t | a_<t)``, the quantity REINFORCE differentiates.

    Args:
        space: the :class:`SearchSpace` whose tokens it emits.
        hidden_size: ``H`` (the paper: 35 units in each of two layers; one layer here).
    """

    def __init__(self, space: SearchSpace, hidden_size: int = 32) -> None:
        super().__init__()
        self.space = space
        self.cell = L.LSTMCell(hidden_size, hidden_size)
        self.start = nn.Parameter(torch.zeros(hidden_size))
        decisions = [len(space.choices(t)) for t in range(space.num_decisions)]
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in decisions)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in decisions)

    def _unroll(self, choose: Callable[[int, torch.Tensor], int]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Run the decisions, ``choose(t, log_probs (choices_t,)) -> token``; returns the tokens, the sum
        of their log-probabilities and the sum of the per-decision entropies (scalars with gradients)."""
        x, state = self.start, None
        arch, log_prob, entropy = [], self.start.new_zeros(()), self.start.new_zeros(())
        for t, (head, embedding) in enumerate(zip(self.heads, self.embeddings)):
            state = self.cell(x, state)  # (h, c), (H,) each
            log_p = F.log_softmax(head(state[0]), dim=-1)  # (choices_t,)
            token = choose(t, log_p)
            arch.append(token)
            log_prob = log_prob + log_p[token]
            entropy = entropy - (log_p.exp() * log_p).sum()
            x = embedding.weight[token]  # (H,), the token fed back in
        return arch, log_prob, entropy

    def sample(self, generator: torch.Generator | None = None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Draw an architecture: ``(tokens, Σ_t log p(a_t | a_<t), Σ_t entropy_t)``, the last two scalars
        that carry gradients; ``generator`` makes the draws reproducible."""
        def draw(t: int, log_p: torch.Tensor) -> int:
            return int(torch.multinomial(log_p.detach().exp().cpu(), 1, generator=generator))

        return self._unroll(draw)

    def score(self, arch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(arch), entropy)`` of a given architecture, each token fed back as if it were sampled."""
        self.space.layers(arch)  # reject a malformed arch
        _, log_prob, entropy = self._unroll(lambda t, log_p: int(arch[t]))
        return log_prob, entropy

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The most likely token at each decision, fed back in turn (greedy decoding)."""
        return self._unroll(lambda t, log_p: int(log_p.argmax()))[0]
