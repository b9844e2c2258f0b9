"""Attention from ``deepnn.layers.attention`` (lecture items T2, T3 and T4's causal mask) against PyTorch:
:func:`attention` against ``F.scaled_dot_product_attention`` (outputs, and the weights read off by
attending to one-hot values), :class:`MultiHeadAttention` against ``nn.MultiheadAttention`` with the
same weights (outputs, weights, gradients), and the additive scores against a loop over pairs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnn.errors import UserError
from deepnn.layers import MultiHeadAttention, additive_scores, attention, causal_mask, dot_product_scores

B, T_Q, T_K, D, D_V = 2, 4, 6, 8, 3


def _qkv(t_q: int = T_Q, t_k: int = T_K) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return (torch.randn(B, t_q, D, dtype=torch.float64), torch.randn(B, t_k, D, dtype=torch.float64),
            torch.randn(B, t_k, D_V, dtype=torch.float64))


def _torch_weights(q: torch.Tensor, k: torch.Tensor, **sdpa_kwargs) -> torch.Tensor:
    """PyTorch's attention weights: attend to one-hot values, v = I, and the output is α' itself."""
    eye = torch.eye(k.shape[-2], dtype=k.dtype).expand(*k.shape[:-1], k.shape[-2])
    return F.scaled_dot_product_attention(q, k, eye, **sdpa_kwargs)


# ---- T2: scores, softmax, weighted sum ------------------------------------------------------------------

@pytest.mark.parametrize("masked", ["none", "random", "causal"])
def test_t2_attention_matches_torch_sdpa(masked: str) -> None:
    q, k, v = _qkv(t_q=T_K) if masked == "causal" else _qkv()
    mask = None
    if masked == "random":
        mask = torch.rand(B, T_Q, T_K) > 0.5
        mask[..., 0] = True  # every query may attend to something
    elif masked == "causal":
        mask = causal_mask(T_K)
    q1, k1, v1 = (t.clone().requires_grad_() for t in (q, k, v))
    q2, k2, v2 = (t.clone().requires_grad_() for t in (q, k, v))
    b, weights = attention(q1, k1, v1, mask=mask)
    expected = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=mask)
    assert b.shape == expected.shape == (B, q.shape[1], D_V)
    assert weights.shape == (B, q.shape[1], T_K)
    assert torch.allclose(b, expected, atol=1e-12)
    assert torch.allclose(weights, _torch_weights(q, k, attn_mask=mask), atol=1e-12)
    if masked == "causal":  # the same as PyTorch's own causal flag
        assert torch.allclose(b, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-12)
    upstream = torch.randn_like(b)
    b.backward(upstream)
    expected.backward(upstream)
    for ours, theirs in ((q1, q2), (k1, k2), (v1, v2)):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-12)


def test_t2_weights_are_a_softmax_over_keys() -> None:
    q, k, v = _qkv()
    b, weights = attention(q, k, v)
    assert (weights > 0).all()
    assert torch.allclose(weights.sum(dim=-1), torch.ones(B, T_Q, dtype=torch.float64))
    assert torch.allclose(b[0, 1], sum(weights[0, 1, j] * v[0, j] for j in range(T_K)))  # b = Σ_j α'_j v_j


def test_t2_dot_product_scores_are_scaled() -> None:
    q, k, _ = _qkv()
    scores = dot_product_scores(q, k)
    assert scores.shape == (B, T_Q, T_K)
    assert scores[1, 2, 3].item() == pytest.approx(torch.dot(q[1, 2], k[1, 3]).item() / math.sqrt(D))


def test_t2_additive_scores_by_a_loop_over_pairs() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(B, T_Q, 5, dtype=torch.float64), torch.randn(B, T_K, 7, dtype=torch.float64)  # d_q ≠ d_k
    w_q, w_k, v = (torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64),
                   torch.randn(4, dtype=torch.float64))
    scores = additive_scores(q, k, w_q, w_k, v)
    assert scores.shape == (B, T_Q, T_K)
    for n in range(B):
        for i in range(T_Q):
            for j in range(T_K):
                expected = torch.dot(v, torch.tanh(torch.mv(w_q, q[n, i]) + torch.mv(w_k, k[n, j])))
                assert scores[n, i, j].item() == pytest.approx(expected.item(), abs=1e-12)
    values = torch.randn(B, T_K, D_V, dtype=torch.float64)
    b, weights = attention(q, k, values, score=lambda q, k: additive_scores(q, k, w_q, w_k, v))
    assert torch.allclose(weights, torch.softmax(scores, dim=-1))
    assert b.shape == (B, T_Q, D_V)


def test_t4_causal_mask_hides_the_future() -> None:
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    assert torch.equal(causal_mask(2, 3), torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool))
    q, k, v = _qkv(t_q=T_K)
    b, weights = attention(q, k, v, mask=causal_mask(T_K))
    future = ~causal_mask(T_K).expand(B, T_K, T_K)
    assert (weights[future] == 0).all()  # exactly zero, not just small
    assert torch.allclose(weights.sum(dim=-1), torch.ones(B, T_K, dtype=torch.float64))
    k2, v2 = k.clone(), v.clone()
    k2[:, 3:], v2[:, 3:] = torch.randn_like(k2[:, 3:]), torch.randn_like(v2[:, 3:])  # change the future
    b2, _ = attention(q, k2, v2, mask=causal_mask(T_K))
    assert torch.equal(b2[:, :3], b[:, :3]) and not torch.allclose(b2[:, 3:], b[:, 3:])


def test_attention_errors() -> None:
    q, k, v = _qkv()
    with pytest.raises(UserError, match="must be boolean"):
        attention(q, k, v, mask=torch.ones(T_Q, T_K))
    with pytest.raises(UserError, match="no key to attend to"):
        attention(q, k, v, mask=torch.zeros(T_Q, T_K, dtype=torch.bool))
    with pytest.raises(UserError, match="every key needs a value"):
        attention(q, k, v[:, :-1])
    with pytest.raises(UserError, match="same size d"):
        dot_product_scores(q, k[..., :-1])


# ---- T3: multi-head attention against nn.MultiheadAttention --------------------------------------------

E, HEADS = 12, 3


def _mha_twins(bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(E, HEADS, bias=bias).double()
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, HEADS, bias=bias, batch_first=True).double()
    return ours, theirs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", ["self", "cross", "causal", "is_causal", "padding", "per-head-mask"])
def test_t3_multi_head_attention_matches_torch(case: str, bias: bool) -> None:
    ours, theirs = _mha_twins(bias)
    assert isinstance(ours, nn.MultiheadAttention)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert all(torch.equal(sd_ours[key], sd_theirs[key]) for key in sd_theirs)  # same init, same random numbers
    torch.manual_seed(1)
    x = torch.randn(B, T_K, E, dtype=torch.float64)
    query = torch.randn(B, T_Q, E, dtype=torch.float64) if case == "cross" else x
    kwargs: dict = {}
    if case in ("causal", "is_causal"):
        kwargs["attn_mask"] = ~causal_mask(T_K)  # PyTorch's convention: True = may not attend
        kwargs["is_causal"] = case == "is_causal"
    elif case == "padding":
        kwargs["key_padding_mask"] = torch.tensor([[False] * T_K, [False] * (T_K - 2) + [True] * 2])
    elif case == "per-head-mask":
        kwargs["attn_mask"] = torch.rand(B * HEADS, T_K, T_K) > 0.6
        kwargs["attn_mask"][..., 0] = False
    for average in (True, False):
        q1, kv1 = query.clone().requires_grad_(), x.clone().requires_grad_()
        q2, kv2 = query.clone().requires_grad_(), x.clone().requires_grad_()
        out, weights = ours(q1, kv1, kv1, average_attn_weights=average, **kwargs)
        out_t, weights_t = theirs(q2, kv2, kv2, average_attn_weights=average, **kwargs)
        assert out.shape == out_t.shape == (B, query.shape[1], E)
        assert weights.shape == weights_t.shape == ((B,) if average else (B, HEADS)) + (query.shape[1], T_K)
        assert torch.allclose(out, out_t, atol=1e-6)
        assert torch.allclose(weights, weights_t, atol=1e-6)
        upstream = torch.randn_like(out)
        out.backward(upstream)
        out_t.backward(upstream)
        assert torch.allclose(q1.grad, q2.grad, atol=1e-6) and torch.allclose(kv1.grad, kv2.grad, atol=1e-6)
        for (name, p_theirs), p_ours in zip(theirs.named_parameters(), ours.parameters(), strict=True):
            assert torch.allclose(p_ours.grad, p_theirs.grad, atol=1e-6), name
        ours.zero_grad()
        theirs.zero_grad()


def test_t3_loads_torch_weights_and_runs_unbatched() -> None:
    ours, theirs = _mha_twins()
    torch.manual_seed(5)
    theirs = nn.MultiheadAttention(E, HEADS, batch_first=True).double()  # different weights
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T_K, E, dtype=torch.float64)  # unbatched (T, E)
    out, weights = ours(x, x, x, need_weights=True)
    out_t, weights_t = theirs(x, x, x)
    assert out.shape == (T_K, E) and weights.shape == (T_K, T_K)
    assert torch.allclose(out, out_t, atol=1e-6) and torch.allclose(weights, weights_t, atol=1e-6)
    out_only, none = ours(x, x, x, need_weights=False)
    assert none is None and torch.allclose(out_only, out)


def test_t3_heads_attend_in_their_own_subspaces() -> None:
    """Head i's output depends only on the i-th block of d = E / h dimensions of Q, K and V."""
    ours, _ = _mha_twins()
    x = torch.randn(1, T_K, E, dtype=torch.float64)
    _, per_head = ours(x, x, x, average_attn_weights=False)
    d = E // HEADS
    w_q, w_k, _ = ours.in_proj_weight.chunk(3)
    b_q, b_k, _ = ours.in_proj_bias.chunk(3)
    for i in range(HEADS):
        rows = slice(i * d, (i + 1) * d)
        q_i, k_i = x @ w_q[rows].T + b_q[rows], x @ w_k[rows].T + b_k[rows]
        assert torch.allclose(per_head[:, i], torch.softmax(q_i @ k_i.transpose(1, 2) / math.sqrt(d), dim=-1))


def test_t3_errors() -> None:
    with pytest.raises(UserError, match="multiple of num_heads"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(E, HEADS)
    x = torch.randn(B, T_K, E)
    with pytest.raises(UserError, match="must be boolean"):
        mha(x, x, x, attn_mask=torch.zeros(T_K, T_K))
    with pytest.raises(UserError, match="attn_mask must have shape"):
        mha(x, x, x, attn_mask=torch.zeros(T_K, T_K + 1, dtype=torch.bool))
    with pytest.raises(UserError, match="takes query"):
        mha(x[..., :-1], x, x)
