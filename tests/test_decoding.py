"""``deepnn.decoding``: the next-token rule (greedy, temperature, top-k, top-p nucleus) as properties over
random logits (Hypothesis), seeded reproducibility, and :func:`generate` with stateful models (only the
new token fed back) against the same model re-fed its whole context (the stateless path a Transformer uses)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deepnn.decoding import filter_logits, generate, sample_next
from deepnn.errors import UserError
from deepnn.models import CharLM, CharRNN

logit_rows = st.integers(min_value=1, max_value=4).flatmap(
    lambda b: st.integers(min_value=1, max_value=12).flatmap(
        lambda v: st.lists(st.floats(-8, 8, allow_nan=False, width=32), min_size=b * v, max_size=b * v).map(
            lambda xs: torch.tensor(xs, dtype=torch.float32).reshape(b, v))))


@settings(max_examples=60, deadline=None)
@given(logits=logit_rows, k=st.integers(1, 12), seed=st.integers(0, 2**16), temperature=st.floats(0.1, 3))
def test_top_k_never_leaves_the_k_largest(logits, k, seed, temperature) -> None:
    tokens = sample_next(logits, temperature=temperature, top_k=k, generator=torch.Generator().manual_seed(seed))
    kth = logits.topk(min(k, logits.shape[1]), dim=-1).values[:, -1]
    assert tokens.shape == (logits.shape[0],) and tokens.dtype == torch.long
    assert (logits.gather(1, tokens[:, None])[:, 0] >= kth).all()


@settings(max_examples=60, deadline=None)
@given(logits=logit_rows, p=st.floats(0.01, 1.0), seed=st.integers(0, 2**16), temperature=st.floats(0.1, 3))
def test_top_p_never_leaves_the_nucleus(logits, p, seed, temperature) -> None:
    tokens = sample_next(logits, temperature=temperature, top_p=p, generator=torch.Generator().manual_seed(seed))
    probs = (logits.double() / temperature).softmax(-1)
    for row, token in zip(probs, tokens.tolist(), strict=True):
        before = row[row > row[token]].sum().item()  # mass of the tokens ranked strictly before it
        assert before < p + 1e-5  # it belongs to the smallest set reaching p
    # what filter_logits keeps is the nucleus: a top set (nothing dropped is likelier than something kept),
    # holding at least p, and minimal (without its least likely token it holds less than p)
    kept = torch.isfinite(filter_logits(logits.double() / temperature, top_p=p))
    for row, keep in zip(probs, kept, strict=True):
        assert keep.any()  # always at least one token
        if not keep.all():
            assert row[~keep].max() <= row[keep].min() + 1e-12
        assert row[keep].sum() >= p - 1e-6
        assert row[keep].sum() - row[keep].min() < p + 1e-6


@settings(max_examples=40, deadline=None)
@given(logits=logit_rows)
def test_temperature_zero_and_greedy_are_argmax(logits) -> None:
    expected = logits.argmax(-1)
    assert torch.equal(sample_next(logits, temperature=0), expected)
    assert torch.equal(sample_next(logits, greedy=True, top_p=0.3), expected)
    top1 = sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(0))  # a maximum (ties kept)
    assert torch.equal(logits.gather(1, top1[:, None])[:, 0], logits.max(-1).values)


def test_sampling_is_reproducible_with_a_seed_and_follows_the_distribution() -> None:
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([sample_next(logits, generator=gen) for _ in range(2000)])  # (N, 3)

    a = draw(1)
    assert torch.equal(a, draw(1)) and not torch.equal(a, draw(2))
    freq = torch.stack([torch.bincount(a[:, b], minlength=10) for b in range(3)]).double() / len(a)
    assert (freq - logits.double().softmax(-1)).abs().max() < 0.05  # multinomial from softmax(logits)
    cold = torch.stack([sample_next(logits, temperature=0.05, generator=torch.Generator().manual_seed(s))
                        for s in range(20)])
    assert cold.shape == (20, 3) and (cold == logits.argmax(-1)).float().mean() > 0.9


def test_sample_next_errors() -> None:
    logits = torch.zeros(2, 5)
    for kwargs, match in [({"temperature": -1.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
                          ({"top_k": 0}, "top_k"), ({"top_k": 1.5}, "top_k"), ({"top_p": 0.0}, "top_p"),
                          ({"top_p": 1.5}, "top_p")]:
        with pytest.raises(UserError, match=match):
            sample_next(logits, **kwargs)
    with pytest.raises(UserError, match=r"\(B, V\)"):
        sample_next(torch.zeros(5))


# ---- generate --------------------------------------------------------------------------------------------

class Stateless(nn.Module):
    """The same model without its state: it returns only logits, so generate re-feeds the whole context."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)[0]


def _models() -> list[nn.Module]:
    torch.manual_seed(0)
    return [CharRNN(6, 8, "gru").double(), CharLM(6, 8, num_layers=2, cell="lstm", dropout=0.3).double()]


@pytest.mark.parametrize("index", [0, 1], ids=["charrnn-gru", "charlm-lstm"])
@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": 1.0}, {"top_k": 3, "top_p": 0.9}])
def test_generate_stateful_equals_refeeding_the_whole_context(index, options) -> None:
    model = _models()[index]
    prompt = torch.tensor([[1, 2, 3], [0, 5, 4]])
    fed_back = generate(model, prompt, 12, generator=torch.Generator().manual_seed(4), **options)
    refed = generate(Stateless(model), prompt, 12, generator=torch.Generator().manual_seed(4), **options)
    assert fed_back.shape == (2, 12) and fed_back.dtype == torch.long
    assert torch.equal(fed_back, refed)
    assert model.training  # eval inside (dropout off), the mode restored


def test_generate_greedy_by_hand_and_max_context() -> None:
    model = _models()[0].eval()
    prompt = torch.tensor([[1, 2]])
    context = prompt
    for _ in range(5):  # the definition: argmax of the last position, appended, repeated
        context = torch.cat([context, model(context)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, prompt, 5, temperature=0), context[:, 2:])
    # a stateless model sees at most max_context tokens per call
    seen = []

    class Window(nn.Module):
        def forward(self, tokens):
            seen.append(tokens.shape[1])
            return torch.zeros(*tokens.shape, 4)

    out = generate(Window(), torch.zeros(1, 5, dtype=torch.long), 6, max_context=3, temperature=0)
    assert out.shape == (1, 6) and seen == [3] * 6
    assert generate(model, prompt, 0).shape == (1, 0)


def test_generate_errors() -> None:
    model = _models()[0]
    with pytest.raises(UserError, match=r"\(B, P\)"):
        generate(model, torch.tensor([1, 2]), 3)
    with pytest.raises(UserError, match=r"\(B, P\)"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(UserError, match="length"):
        generate(model, torch.tensor([[1]]), -1)
    with pytest.raises(UserError, match="max_context"):
        generate(model, torch.tensor([[1]]), 2, max_context=0)
    with pytest.raises(UserError, match="top_p"):
        generate(model, torch.tensor([[1]]), 2, top_p=2.0)
