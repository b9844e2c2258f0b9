"""C20: NAS with a REINFORCE controller (Zoph & Le 2016; Williams 1992)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnn.data import ImageData
from deepnn.errors import UserError
from deepnn.nas import Controller, SearchSpace, build_child, child_reward, reinforce_step, search
from deepnn.train.config import Config

TARGET = [2, 0, 1, 2, 0, 1]  # 5x5-8 3x3-32 1x1-16, one of 3^6 = 729 archs


def match_fraction(arch: list[int]) -> float:
    """Synthetic reward: the fraction of tokens equal to TARGET's."""
    return sum(a == t for a, t in zip(arch, TARGET)) / len(TARGET)


def test_space_string_form_and_errors() -> None:
    space = SearchSpace(num_layers=2)
    assert space.to_string([1, 1, 2, 2]) == "3x3-16 5x5-32"
    assert space.to_string([0, 0, 0, 0]) == "1x1-8 1x1-8"
    with pytest.raises(UserError, match="4 tokens"):
        space.to_string([1, 1])
    with pytest.raises(UserError, match=r"\[0, 3\)"):
        space.to_string([1, 3, 0, 0])
    with pytest.raises(UserError, match="odd"):
        SearchSpace(filter_sizes=(2, 3))


def test_controller_log_prob_is_the_sum_of_log_softmax_of_the_chosen_tokens() -> None:
    """Recompute the sample's log-probability and entropy by hand with PyTorch's own LSTM cell."""
    space = SearchSpace(num_layers=3)
    torch.manual_seed(0)
    controller = Controller(space, hidden_size=16)
    arch, log_prob, entropy = controller.sample(torch.Generator().manual_seed(1))
    cell = nn.LSTMCell(16, 16)
    cell.load_state_dict(controller.cell.state_dict())
    x, h, c = controller.start[None], torch.zeros(1, 16), torch.zeros(1, 16)
    expected_lp, expected_h = 0.0, 0.0
    for t, token in enumerate(arch):
        h, c = cell(x, (h, c))
        log_p = F.log_softmax(controller.heads[t](h)[0], dim=-1)  # (choices_t,)
        expected_lp += log_p[token]
        expected_h += -(log_p.exp() * log_p).sum()
        x = controller.embeddings[t](torch.tensor([token]))
    torch.testing.assert_close(log_prob, expected_lp)
    torch.testing.assert_close(entropy, expected_h)
    torch.testing.assert_close(controller.score(arch)[0], log_prob)
    assert log_prob.requires_grad and log_prob.shape == ()


def test_reinforce_finds_the_target_architecture() -> None:
    """The lecture's claim: scaling ∇ log p(arch) by the reward makes the controller write the best arch."""
    space = SearchSpace(num_layers=3)
    result = search(match_fraction, space, steps=300, seed=0)
    assert result.greedy_arch == space.to_string(TARGET) == "5x5-8 3x3-32 1x1-16"
    assert result.best.reward == 1.0
    first, last = result.history[:50], result.history[-50:]
    assert sum(s.reward for s in last) / 50 > sum(s.reward for s in first) / 50 + 0.3
    again = search(match_fraction, space, steps=300, seed=0)
    assert [(s.tokens, s.reward, s.baseline) for s in again.history] == [
        (s.tokens, s.reward, s.baseline) for s in result.history]


def test_baseline_is_a_moving_average_of_past_rewards() -> None:
    history = search(match_fraction, SearchSpace(num_layers=3), steps=20, baseline_decay=0.8, seed=0).history
    assert history[0].baseline == history[0].reward  # started at the first reward
    for prev, cur in itertools.pairwise(history):
        assert cur.baseline == pytest.approx(0.8 * prev.baseline + 0.2 * prev.reward)


@pytest.mark.parametrize("reward, baseline, sign", [(0.2, 0.7, -1), (0.7, 0.2, +1), (0.5, 0.5, 0)])
def test_sign_of_the_advantage_decides_the_direction(reward: float, baseline: float, sign: int) -> None:
    """R < b makes the sampled arch less likely, R > b more likely, R = b changes nothing."""
    torch.manual_seed(0)
    controller = Controller(SearchSpace(), hidden_size=8)
    optimizer = torch.optim.SGD(controller.parameters(), lr=0.1)
    arch, log_prob, _ = controller.sample(torch.Generator().manual_seed(0))
    before = log_prob.item()
    reinforce_step(controller, optimizer, log_prob, reward, baseline)
    after = controller.score(arch)[0].item()
    if sign == 0:
        assert after == before
    else:
        assert sign * (after - before) > 1e-3


def test_search_caches_rewards_of_identical_archs() -> None:
    seen: list[list[int]] = []
    history = search(lambda arch: seen.append(arch) or 0.5, SearchSpace(num_layers=1), steps=40, seed=0).history
    assert len(seen) == len({tuple(a) for a in seen}) == sum(not s.cached for s in history) < 40
    with pytest.raises(UserError, match="steps"):
        search(match_fraction, SearchSpace(), steps=0)


@pytest.mark.parametrize("input_size", [28, 27])
def test_build_child_shapes_for_every_choice(input_size: int) -> None:
    space = SearchSpace(num_layers=2)
    x = torch.randn(2, 1, input_size, input_size)
    for arch in itertools.product(range(3), repeat=space.num_decisions):
        net = build_child(arch, space, in_channels=1, num_classes=10, input_size=input_size)
        assert net(x).shape == (2, 10), space.to_string(arch)
        widths = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert widths == [n for _, n in space.layers(arch)]


def test_child_reward_on_a_tiny_fashion_mnist_subset(fmnist: ImageData) -> None:
    data = ImageData(train=(fmnist.train[0][:256], fmnist.train[1][:256]),
                     val=(fmnist.val[0][:256], fmnist.val[1][:256]), test=fmnist.test,
                     classes=fmnist.classes, mean=fmnist.mean, std=fmnist.std)
    cfg = Config()
    cfg.data.batch_size, cfg.train.epochs, cfg.train.progress, cfg.train.device = 64, 1, False, "cpu"
    space = SearchSpace(num_layers=2)
    reward = child_reward([1, 1, 1, 1], space, data, cfg)
    assert 0.0 <= reward <= 1.0 and reward > 0.2  # chance is 0.1
    assert child_reward([1, 1, 1, 1], space, data, cfg) == reward  # seeded: the same child, the same reward


def deepnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepnn", *args], capture_output=True, text=True, timeout=120)


def test_cli_nas_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "nas.json"
    r = deepnn("nas", "--steps", "2", "--train-subset", "256", "--val-size", "256", "--device", "cpu",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("step   1/2  ") and lines[1].startswith("step   2/2  ")
    assert lines[2].startswith("best architecture: ") and "validation accuracy" in lines[2]
    record = json.loads(out.read_text())
    assert len(record["history"]) == 2 and record["best"]["arch"] in lines[2]
    assert record["settings"]["steps"] == 2


@pytest.mark.parametrize("args, fragment", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--layers", "0"], "--layers must be at least 1"),
    (["--train-subset", "32"], "--batch-size"),
    (["--controller-lr", "0"], "--controller-lr must be positive"),
])
def test_cli_nas_bad_arguments(args: list[str], fragment: str) -> None:
    r = deepnn("nas", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepnn nas: error:") and fragment in lines[0], r.stderr
