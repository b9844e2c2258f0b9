"""Behaviours of ``deepnn.layers`` that the layer tests left open, found by mutation testing
(``benchmarks/mutation.sh``, docs/testing.md). Each test pins one behaviour: argument checks at their
exact boundary, the paths a default never takes (``impl="sdpa"``, pre-projected additive keys,
unbatched inputs with masks, ``T_q ≠ T_k``), documented defaults, and the device a result is built on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnn.errors import UserError
from deepnn.layers import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    MultiHeadAttention,
    PeepholeLSTMCell,
    PositionalEncoding,
    RNNCell,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    additive_scores,
    attention,
    causal_mask,
    hidden_jacobian_norms,
    unroll,
)
from deepnn.layers import conv as scratch


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- attention, additive scores, the causal mask (T2, T4) -------------------------------------------------

def _additive_by_loop(q: torch.Tensor, k: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor,
                      v: torch.Tensor) -> torch.Tensor:
    """α_ij = vᵀ tanh(W_q q_i + W_k k_j) for the last two axes, any leading axes."""
    lead = q.shape[:-2]
    qf, kf = q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:])
    out = torch.empty(qf.shape[0], q.shape[-2], k.shape[-2], dtype=q.dtype)
    for n in range(qf.shape[0]):
        for i in range(q.shape[-2]):
            for j in range(k.shape[-2]):
                out[n, i, j] = torch.dot(v, torch.tanh(w_q @ qf[n, i] + w_k @ kf[n, j]))
    return out.reshape(*lead, q.shape[-2], k.shape[-2])


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_additive_scores_for_any_leading_axes(lead: tuple[int, ...]) -> None:
    q, k = _randn(*lead, 3, 5), _randn(*lead, 4, 6, seed=1)
    w_q, w_k, v = _randn(7, 5, seed=2), _randn(7, 6, seed=3), _randn(7, seed=4)
    assert torch.allclose(additive_scores(q, k, w_q, w_k, v), _additive_by_loop(q, k, w_q, w_k, v))


def test_additive_scores_take_keys_already_projected() -> None:
    q, k = _randn(2, 3, 5), _randn(2, 4, 6, seed=1)
    w_q, w_k, v = _randn(7, 5, seed=2), _randn(7, 6, seed=3), _randn(7, seed=4)
    projected = k @ w_k.T  # (B, T_k, h)
    assert torch.allclose(additive_scores(q, projected, w_q, None, v), additive_scores(q, k, w_q, w_k, v))
    with pytest.raises(UserError, match=r"w_k None, v \(6,\)"):  # projected keys (h = 7) but v has 6 entries
        additive_scores(q, projected, w_q, None, v[:6])


@pytest.mark.parametrize("bad", ["w_q columns", "w_k columns", "w_k rows", "v size"])
def test_additive_scores_reject_each_mismatched_shape(bad: str) -> None:
    q, k = _randn(2, 3, 5), _randn(2, 4, 6, seed=1)
    w_q, w_k, v = _randn(7, 5, seed=2), _randn(7, 6, seed=3), _randn(7, seed=4)
    if bad == "w_q columns":
        w_q = w_q[:, :4]
    elif bad == "w_k columns":
        w_k = w_k[:, :5]
    elif bad == "w_k rows":
        w_k = w_k[:6]
    else:
        v = v[:6]
    with pytest.raises(UserError, match="additive_scores needs w_q") as info:
        additive_scores(q, k, w_q, w_k, v)
    assert (f"got q (2, 3, 5), k (2, 4, 6), w_q {tuple(w_q.shape)}, w_k {tuple(w_k.shape)}, v {tuple(v.shape)}"
            in str(info.value))


def test_causal_mask_is_built_on_the_requested_device() -> None:
    assert causal_mask(3, 4, device="meta").device.type == "meta"


def test_attention_rejects_a_mask_with_one_empty_row() -> None:
    q, k, v = _randn(1, 3, 4), _randn(1, 5, 4, seed=1), _randn(1, 5, 2, seed=2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing; the others are fine
    with pytest.raises(UserError, match="no key to attend to"):
        attention(q, k, v, mask=mask)


def test_attention_error_names_both_lengths() -> None:
    q, k, v = _randn(1, 3, 4), _randn(1, 5, 4, seed=1), _randn(1, 4, 2, seed=2)
    with pytest.raises(UserError, match=r"k has 5 positions \(shape \(1, 5, 4\)\), v has 4 \(shape \(1, 4, 2\)\)"):
        attention(q, k, v)


@pytest.mark.parametrize("flag", ["is_compiling", "is_exporting"])
def test_attention_skips_the_data_dependent_mask_check_while_tracing(flag: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``torch.compile`` / ``torch.export`` the empty-row check is left out of the graph."""
    monkeypatch.setattr(torch.compiler, flag, lambda: True)
    q, k, v = _randn(1, 2, 4), _randn(1, 3, 4, seed=1), _randn(1, 3, 2, seed=2)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    b, weights = attention(q, k, v, mask=mask)  # no error: the empty row's softmax is 0/0
    assert torch.isnan(weights[0, 1]).all() and torch.equal(weights[0, 0], torch.tensor([1.0, 0.0, 0.0],
                                                                                          dtype=torch.float64))


# ---- MultiHeadAttention (T3) -------------------------------------------------------------------------------

def _mha(embed_dim: int = 8, heads: int = 2, **kwargs) -> MultiHeadAttention:
    torch.manual_seed(0)
    mha = MultiHeadAttention(embed_dim, heads, **kwargs).double()
    with torch.no_grad():  # non-zero biases, so that a dropped bias shows
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    return mha


def test_mha_defaults_scratch_impl_and_keeps_no_weights() -> None:
    mha = MultiHeadAttention(8, 2)
    assert mha.impl == "scratch" and mha.keep_weights is False and mha.last_weights is None
    x = torch.randn(1, 3, 8)
    mha(x, x, x)
    assert mha.last_weights is None


@pytest.mark.parametrize("embed_dim,heads", [(1, 1), (4, 1), (6, 6)])
def test_mha_accepts_one_head_and_one_dimension_per_head(embed_dim: int, heads: int) -> None:
    mha = MultiHeadAttention(embed_dim, heads)
    x = torch.randn(2, 3, embed_dim)
    assert mha(x, x, x)[0].shape == (2, 3, embed_dim)


@pytest.mark.parametrize("embed_dim,heads", [(0, 2), (0, 1), (4, 0), (-2, 2), (4, -2)])
def test_mha_rejects_non_positive_sizes(embed_dim: int, heads: int) -> None:
    with pytest.raises(UserError, match="positive multiple of num_heads"):
        MultiHeadAttention(embed_dim, heads)


def test_mha_parameters_are_built_on_the_requested_device() -> None:
    mha = MultiHeadAttention(8, 2, device="meta")
    assert all(p.device.type == "meta" for p in mha.parameters())


def test_mha_sdpa_impl_equals_ours_when_no_weights_are_asked_for() -> None:
    mha = _mha()
    q, kv = _randn(2, 3, 8), _randn(2, 5, 8, seed=1)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    causal = ~causal_mask(3, 5)
    for kwargs in ({}, {"key_padding_mask": padding}, {"attn_mask": causal}, {"is_causal": True}):
        mha.impl = "scratch"
        expected, _ = mha(q, kv, kv, **kwargs)
        mha.impl = "sdpa"
        out, weights = mha(q, kv, kv, need_weights=False, **kwargs)
        assert weights is None
        assert torch.allclose(out, expected), kwargs


def _forbid_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the fused kernel was used")

    monkeypatch.setattr(F, "scaled_dot_product_attention", fail)  # the module deepnn.layers.attention calls


@pytest.mark.parametrize("impl", ["scratch", "auto"])
def test_mha_uses_our_attention_on_the_cpu(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``impl="scratch"`` never calls the fused kernel; ``"auto"`` does not on the CPU."""
    mha = _mha()
    mha.impl = impl
    x = _randn(2, 3, 8)
    _forbid_sdpa(monkeypatch)
    out, weights = mha(x, x, x, need_weights=False)
    assert weights is None and out.shape == (2, 3, 8)


def test_mha_sdpa_impl_still_returns_and_keeps_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused kernel returns no weights, so asking for them (or keeping them) uses ours."""
    mha = _mha()
    mha.impl = "sdpa"
    x = _randn(2, 3, 8)
    _forbid_sdpa(monkeypatch)
    out, weights = mha(x, x, x, need_weights=True)
    assert weights is not None and weights.shape == (2, 3, 3)
    mha.keep_weights = True
    out, weights = mha(x, x, x, need_weights=False)
    assert weights is None and mha.last_weights is not None and mha.last_weights.shape == (2, 2, 3, 3)


def test_mha_keep_weights_stores_the_per_head_weights() -> None:
    mha = _mha()
    mha.keep_weights = True
    x = _randn(2, 3, 8)
    _, per_head = mha(x, x, x, average_attn_weights=False)
    assert torch.equal(mha.last_weights, per_head)
    assert not mha.last_weights.requires_grad


def test_mha_unbatched_input_takes_an_unbatched_padding_mask() -> None:
    mha = _mha()
    q, kv = _randn(3, 8), _randn(5, 8, seed=1)
    padding = torch.tensor([False, False, True, False, True])
    out, weights = mha(q, kv, kv, key_padding_mask=padding)
    out_b, weights_b = mha(q[None], kv[None], kv[None], key_padding_mask=padding[None])
    assert out.shape == (3, 8) and weights.shape == (3, 5)
    assert torch.allclose(out, out_b[0]) and torch.allclose(weights, weights_b[0])
    assert (weights[:, padding] == 0).all()


@pytest.mark.parametrize("shapes", [
    ((2, 3, 8), (2, 5), (2, 5, 8)),  # key without its feature axis
    ((2, 3, 8), (2, 5, 8), (2, 5)),  # value without its feature axis
    ((2, 3, 8), (2, 5, 8), (2, 4, 8)),  # keys and values of different lengths
    ((2, 3, 8), (1, 5, 8), (1, 5, 8)),  # query batch 2, key batch 1
    ((2, 3, 8), (2, 8), (2, 8, 8)),  # a 2-D key whose other sizes happen to fit
    ((2, 3, 4, 8), (2, 5, 8), (2, 5, 8)),  # a 4-D query
])
def test_mha_rejects_each_mismatched_input(shapes) -> None:
    """Mismatched sizes, and inputs of the wrong rank even when their sizes fit."""
    mha = MultiHeadAttention(8, 2)
    q, k, v = (torch.zeros(s) for s in shapes)
    with pytest.raises(UserError, match="takes query"):
        mha(q, k, v)


def test_mha_is_causal_with_fewer_queries_than_keys() -> None:
    mha = _mha()
    q, kv = _randn(2, 3, 8), _randn(2, 5, 8, seed=1)
    out, weights = mha(q, kv, kv, is_causal=True)
    expected, expected_weights = mha(q, kv, kv, attn_mask=~causal_mask(3, 5))
    assert torch.allclose(out, expected) and torch.allclose(weights, expected_weights)
    assert (weights[:, 0, 1:] == 0).all()


def test_mha_causal_mask_follows_the_query_device() -> None:
    mha = MultiHeadAttention(8, 2)
    allowed = mha._allowed(None, None, True, 2, 3, 5, torch.device("meta"))
    assert allowed.device.type == "meta" and allowed.shape == (3, 5)


def test_mha_mask_errors_name_the_mask() -> None:
    mha = MultiHeadAttention(8, 2)
    x = torch.zeros(2, 3, 8)
    with pytest.raises(UserError, match="^attn_mask must be boolean"):
        mha(x, x, x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(UserError, match="^key_padding_mask must be boolean"):
        mha(x, x, x, key_padding_mask=torch.zeros(2, 3))
    with pytest.raises(UserError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\), got \(3, 4\)"):
        mha(x, x, x, attn_mask=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(UserError, match=r"key_padding_mask must have shape \(2, 3\) \(batch, keys\), got \(3, 2\)"):
        mha(x, x, x, key_padding_mask=torch.zeros(3, 2, dtype=torch.bool))


def test_mha_matches_torch_with_one_head_and_biases() -> None:
    ours = _mha(6, 1)
    theirs = torch.nn.MultiheadAttention(6, 1, batch_first=True).double()
    theirs.load_state_dict(ours.state_dict())
    q, kv = _randn(2, 3, 6), _randn(2, 4, 6, seed=1)
    out, w = ours(q, kv, kv)
    out_t, w_t = theirs(q, kv, kv)
    assert torch.allclose(out, out_t) and torch.allclose(w, w_t)
    assert F.mse_loss(out, out_t).item() < 1e-20


# ---- Transformer layers (T4, T5) ---------------------------------------------------------------------------

D_MODEL, NHEAD, FF = 8, 2, 16


def _twins(ours_cls: type, theirs_cls: type, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = theirs_cls(D_MODEL, NHEAD, dim_feedforward=FF, dropout=0.0, batch_first=True, dtype=torch.float64,
                        **kwargs).eval()
    ours = ours_cls(D_MODEL, NHEAD, dim_feedforward=FF, dropout=0.0, dtype=torch.float64, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _random_mask(rows: int, cols: int, seed: int) -> torch.Tensor:
    """PyTorch's convention (True = may not attend), not causal, every row keeps one key."""
    mask = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed)) > 0.5
    mask[:, 0] = False
    return mask


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_layer_applies_an_arbitrary_src_mask_as_torch(norm_first: bool) -> None:
    ours, theirs = _twins(TransformerEncoderLayer, nn.TransformerEncoderLayer, norm_first=norm_first)
    src, mask = _randn(2, 5, D_MODEL), _random_mask(5, 5, seed=1)
    expected = theirs(src, src_mask=mask)
    assert torch.allclose(ours(src, src_mask=mask), expected, atol=1e-10)
    assert not torch.allclose(ours(src), expected, atol=1e-6)  # the mask matters


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_layer_applies_every_mask_as_torch(norm_first: bool) -> None:
    ours, theirs = _twins(TransformerDecoderLayer, nn.TransformerDecoderLayer, norm_first=norm_first)
    tgt, memory = _randn(2, 4, D_MODEL), _randn(2, 6, D_MODEL, seed=1)
    tgt_mask, memory_mask = _random_mask(4, 4, seed=2), _random_mask(4, 6, seed=3)
    for kwargs in ({"tgt_mask": tgt_mask}, {"memory_mask": memory_mask},
                   {"tgt_mask": tgt_mask, "memory_mask": memory_mask}):
        expected = theirs(tgt, memory, **kwargs)
        assert torch.allclose(ours(tgt, memory, **kwargs), expected, atol=1e-10), kwargs
        assert not torch.allclose(ours(tgt, memory), expected, atol=1e-6), kwargs


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_layer_memory_is_causal_masks_the_cross_attention(norm_first: bool) -> None:
    ours, theirs = _twins(TransformerDecoderLayer, nn.TransformerDecoderLayer, norm_first=norm_first)
    tgt, memory = _randn(2, 4, D_MODEL), _randn(2, 4, D_MODEL, seed=1)
    expected = theirs(tgt, memory, memory_mask=~causal_mask(4))
    assert torch.allclose(ours(tgt, memory, memory_is_causal=True), expected, atol=1e-10)
    assert not torch.allclose(ours(tgt, memory), expected, atol=1e-6)


def test_decoder_layer_rejects_unbatched_target_with_batched_memory() -> None:
    layer = TransformerDecoderLayer(D_MODEL, NHEAD, dim_feedforward=FF)
    with pytest.raises(UserError, match="^TransformerDecoderLayer takes tgt"):
        layer(torch.zeros(4, D_MODEL), torch.zeros(1, 6, D_MODEL))
    with pytest.raises(UserError, match="same B and d_model"):
        layer(torch.zeros(2, 4, D_MODEL), torch.zeros(2, 6, D_MODEL + 2))


@pytest.mark.parametrize("cls", [TransformerEncoderLayer, TransformerDecoderLayer])
def test_transformer_layers_let_the_fused_kernel_run(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers never ask their attention for weights, so ``impl="sdpa"`` reaches PyTorch's kernel."""
    layer = cls(D_MODEL, NHEAD, dim_feedforward=FF, dropout=0.0).eval()
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    attns = [layer.self_attn] + ([layer.multihead_attn] if cls is TransformerDecoderLayer else [])
    for attn in attns:
        attn.impl = "sdpa"
    x = torch.randn(2, 4, D_MODEL)
    layer(x) if cls is TransformerEncoderLayer else layer(x, torch.randn(2, 3, D_MODEL))
    assert len(calls) == len(attns)


@pytest.mark.parametrize("cls,torch_cls", [(TransformerEncoderLayer, nn.TransformerEncoderLayer),
                                           (TransformerDecoderLayer, nn.TransformerDecoderLayer)])
def test_transformer_layers_pass_bias_and_layer_norm_eps_to_torch(cls: type, torch_cls: type) -> None:
    ours, theirs = _twins(cls, torch_cls, bias=False, layer_norm_eps=1e-3)
    assert ours.self_attn.in_proj_bias is None and ours.linear1.bias is None
    assert ours.norm1.eps == 1e-3
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x, memory = _randn(2, 4, D_MODEL), _randn(2, 3, D_MODEL, seed=1)
    args = (x,) if cls is TransformerEncoderLayer else (x, memory)
    assert torch.allclose(ours(*args), theirs(*args), atol=1e-10)


@pytest.mark.parametrize("cls", [TransformerEncoderLayer, TransformerDecoderLayer])
def test_transformer_layers_default_feed_forward_is_torchs_2048(cls: type) -> None:
    assert cls(D_MODEL, NHEAD).linear1.out_features == 2048


@pytest.mark.parametrize("cls", [TransformerEncoderLayer, TransformerDecoderLayer])
def test_transformer_layers_are_built_on_the_requested_device(cls: type) -> None:
    layer = cls(D_MODEL, NHEAD, dim_feedforward=FF, device="meta")
    assert {p.device.type for p in layer.parameters()} == {"meta"}


@pytest.mark.parametrize("d_model,nhead", [(1, 1), (4, 1), (4, 4)])
def test_transformer_layers_accept_one_head_and_one_dimension_per_head(d_model: int, nhead: int) -> None:
    layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward=FF)
    assert layer(torch.randn(2, 3, d_model)).shape == (2, 3, d_model)


@pytest.mark.parametrize("d_model,nhead", [(0, 2), (0, 1), (4, 0), (-4, 2), (4, -2)])
def test_transformer_layers_reject_non_positive_sizes(d_model: int, nhead: int) -> None:
    with pytest.raises(UserError, match="^TransformerEncoderLayer: d_model .* must be a positive multiple of nhead"):
        TransformerEncoderLayer(d_model, nhead)


def test_transformer_layer_errors_name_the_layer() -> None:
    with pytest.raises(UserError, match="^TransformerDecoderLayer is batch first only"):
        TransformerDecoderLayer(D_MODEL, NHEAD, batch_first=False)
    with pytest.raises(UserError, match="^TransformerEncoderLayer: activation must be .* got int"):
        TransformerEncoderLayer(D_MODEL, NHEAD, activation=3)


def test_positional_encoding_table_for_odd_sizes_and_dtypes() -> None:
    pe = PositionalEncoding(5, max_len=4)
    out = pe(torch.zeros(2, 3, 5, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 3, 5)
    t, i = 2, 1
    assert out[0, t, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(t / 10000 ** (2 * i / 5))).item())
    assert out[1, t, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(t / 10000 ** (2 * i / 5))).item())
    assert out[0, 3 - 1, 4].item() == pytest.approx(torch.sin(torch.tensor(2 / 10000 ** (4 / 5))).item())
    assert pe(torch.zeros(1, 4, 5)).shape == (1, 4, 5)  # exactly max_len positions
    assert "table" not in pe.state_dict()  # the sinusoidal table is not saved


@pytest.mark.parametrize("max_len", [0, -1, True, 2.0, "8"])
def test_positional_encoding_rejects_a_bad_max_len(max_len) -> None:
    with pytest.raises(UserError, match="max_len must be an integer ≥ 1"):
        PositionalEncoding(4, max_len=max_len)


def test_positional_encoding_learned_table_is_small_and_saved() -> None:
    torch.manual_seed(0)
    pe = PositionalEncoding(6, max_len=100, kind="learned")
    assert "table" in pe.state_dict() and pe.table.shape == (100, 6)
    assert 0.01 < pe.table.std().item() < 0.03
    x = torch.randn(2, 7, 6)
    assert torch.equal(pe(x), x + pe.table[:7])


# ---- recurrent cells and layers (R2, R4–R6) ----------------------------------------------------------------

LAYER_CLASSES = [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]


def _layer_pair(cls: type, torch_cls: type, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = torch_cls(3, 4, batch_first=True, **kwargs).double()
    ours = cls(3, 4, impl="scratch", **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _initial_state(layer: nn.Module, *batch: int):
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), *batch, 4)
    h = _randn(*shape, seed=5)
    return (h, _randn(*shape, seed=6)) if isinstance(layer, nn.LSTM) else h


def _assert_close_outputs(a, b) -> None:
    (out_a, state_a), (out_b, state_b) = a, b
    torch.testing.assert_close(out_a, out_b)
    for s, t in zip(state_a if isinstance(state_a, tuple) else (state_a,),
                    state_b if isinstance(state_b, tuple) else (state_b,), strict=True):
        torch.testing.assert_close(s, t)


@pytest.mark.parametrize("cls,torch_cls", LAYER_CLASSES, ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("given", [False, True], ids=["zeros", "given_state"])
def test_scratch_layers_in_inference_match_torch(cls: type, torch_cls: type, given: bool) -> None:
    """Under ``torch.no_grad()`` (and with frozen weights) the scratch LSTM runs its plain time loop."""
    ours, theirs = _layer_pair(cls, torch_cls, num_layers=2, bidirectional=True)
    x = _randn(2, 5, 3)
    state = _initial_state(theirs, 2) if given else None
    with torch.no_grad():
        _assert_close_outputs(ours(x, state), theirs(x, state))
    ours.requires_grad_(False)
    _assert_close_outputs(ours(x, state), theirs(x, state))


def test_scratch_lstm_inference_does_not_build_the_bptt_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    rnn_module = sys.modules["deepnn.layers.rnn"]

    def fail(*args):
        raise AssertionError("_LSTMThroughTime used without gradients")

    monkeypatch.setattr(rnn_module._LSTMThroughTime, "apply", fail)
    ours, _ = _layer_pair(LSTM, nn.LSTM)
    with torch.no_grad():
        ours(_randn(2, 5, 3))
    ours.requires_grad_(False)
    ours(_randn(2, 5, 3))  # grad mode on, but nothing requires a gradient


@pytest.mark.parametrize("cls,torch_cls", LAYER_CLASSES, ids=["rnn", "lstm", "gru"])
def test_scratch_layers_return_torchs_state_types(cls: type, torch_cls: type) -> None:
    ours, theirs = _layer_pair(cls, torch_cls)
    _, state = ours(_randn(2, 5, 3))
    _, expected = theirs(_randn(2, 5, 3))
    assert type(state) is type(expected)


@pytest.mark.parametrize("cls,torch_cls", LAYER_CLASSES, ids=["rnn", "lstm", "gru"])
def test_fused_layers_use_the_initial_state(cls: type, torch_cls: type) -> None:
    torch.manual_seed(0)
    theirs = torch_cls(3, 4, num_layers=2, batch_first=True).double()
    fused = cls(3, 4, num_layers=2).double()
    fused.load_state_dict(theirs.state_dict())
    x, state = _randn(2, 5, 3), _initial_state(theirs, 2)
    _assert_close_outputs(fused(x, state), theirs(x, state))


@pytest.mark.parametrize("cls,torch_cls", LAYER_CLASSES, ids=["rnn", "lstm", "gru"])
def test_scratch_layers_take_an_unbatched_input_with_an_initial_state(cls: type, torch_cls: type) -> None:
    ours, theirs = _layer_pair(cls, torch_cls, num_layers=2, bidirectional=True)
    x, state = _randn(5, 3), _initial_state(theirs)  # (T, I) and (L·D, H)
    out, final = ours(x, state)
    assert out.shape == (5, 8)
    _assert_close_outputs((out, final), theirs(x, state))


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_scratch_layers_reject_an_empty_sequence(cls: type) -> None:
    layer = cls(3, 4, impl="scratch")
    for x in (torch.zeros(2, 0, 3), torch.zeros(0, 3)):
        with pytest.raises(UserError, match="non-empty sequence"):
            layer(x)
    assert layer(torch.zeros(1, 1, 3))[0].shape == (1, 1, 4)  # one step of one sequence is fine


def test_scratch_layer_errors_describe_the_layout_and_the_state() -> None:
    layer = GRU(3, 4, batch_first=False, impl="scratch")
    with pytest.raises(UserError, match=r"^GRU takes a non-empty sequence of shape \(T, B, I\) or \(T, I\)"):
        layer(torch.zeros(5, 2, 2))
    with pytest.raises(UserError, match="^GRU's initial state is one tensor h_0$"):
        layer(torch.zeros(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(UserError, match=r"^GRU\(impl='scratch'\) takes a tensor"):
        layer([torch.zeros(5, 2, 3)])
    with pytest.raises(UserError, match="^unknown impl 'x' for RNN; choose one of fused, scratch$"):
        RNN(3, 4, impl="x")
    layer.impl = "nope"
    with pytest.raises(UserError, match="^unknown impl 'nope' for GRU; choose one of fused, scratch$"):
        layer(torch.zeros(5, 2, 3))


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_scratch_layers_apply_their_dropout_probability(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    dropout = F.dropout
    monkeypatch.setattr(F, "dropout", lambda x, p=0.5, training=True, inplace=False: seen.append((p, training))
                        or dropout(x, p, training, inplace))
    layer = cls(3, 4, num_layers=3, dropout=0.2, impl="scratch").train()
    layer(torch.randn(2, 5, 3))
    assert seen == [(0.2, True), (0.2, True)]  # between layers 1-2 and 2-3 only


@pytest.mark.parametrize("cls,torch_cls", LAYER_CLASSES, ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_scratch_layers_train_under_bf16_autocast_like_fused(cls: type, torch_cls: type, bias: bool) -> None:
    torch.manual_seed(0)
    fused = cls(8, 16, num_layers=2, bias=bias, bidirectional=True)
    scratch = cls(8, 16, num_layers=2, bias=bias, bidirectional=True, impl="scratch")
    scratch.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, 8)
    results = []
    for layer in (scratch, fused):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = layer(xi)
        h = state[0] if isinstance(state, tuple) else state
        (out.float().square().sum() + h.float().sum()).backward()
        results.append([out.float(), h.float(), xi.grad, *(p.grad for p in layer.parameters())])
    for a, b in zip(*results, strict=True):  # outputs, h_n, the input's and every parameter's gradient
        assert a.shape == b.shape
        a, b = a.float(), b.float()
        assert (a - b).norm() <= 0.05 * b.norm() + 1e-6  # bf16 rounding: about 1 % here


@pytest.mark.parametrize("cls,kwargs", [(RNN, {"nonlinearity": "relu"}), (LSTM, {}), (GRU, {})])
def test_sequence_layers_pass_bias_dtype_and_device_to_torch(cls: type, kwargs: dict) -> None:
    layer = cls(3, 4, bias=False, dtype=torch.float64, device="meta", **kwargs)
    params = dict(layer.named_parameters())
    assert not any(name.startswith("bias") for name in params)
    assert {p.dtype for p in params.values()} == {torch.float64}
    assert {p.device.type for p in params.values()} == {"meta"}


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_scratch_layers_start_from_zeros_on_the_inputs_device(cls: type) -> None:
    layer = cls(3, 4, num_layers=2, impl="scratch", device="meta")
    out, h = layer(torch.zeros(2, 5, 3, device="meta"))
    assert out.device.type == "meta" and h.device.type == "meta"


@pytest.mark.parametrize("cell_cls", [RNNCell, LSTMCell, GRUCell, PeepholeLSTMCell])
def test_cells_start_from_zeros_on_the_inputs_device(cell_cls: type) -> None:
    cell = cell_cls(3, 4, device="meta")
    out = cell(torch.zeros(2, 3, device="meta"))
    assert (out[0] if isinstance(out, tuple) else out).device.type == "meta"


def test_cell_state_error_gives_the_expected_shape() -> None:
    cell = GRUCell(3, 4)
    with pytest.raises(UserError, match=r"^GRUCell's state must have shape \(2, 4\) for an input of shape \(2, 3\)"):
        cell(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(UserError, match=r"^GRUCell's state must have shape \(4,\) for an input of shape \(3,\)"):
        cell(torch.zeros(3), torch.zeros(1, 4))
    with pytest.raises(UserError, match=r"^GRUCell takes one time step"):
        cell(torch.zeros(3, 2))


def test_unroll_rejects_a_sequence_without_steps() -> None:
    with pytest.raises(UserError, match="T ≥ 1"):
        unroll(RNNCell(3, 4), torch.zeros(0, 2, 3))
    outputs, h = unroll(RNNCell(3, 4), torch.zeros(2, 0, 3))  # an empty batch is not an error
    assert outputs.shape == (2, 0, 4) and h.shape == (0, 4)


def test_peephole_cell_passes_bias_dtype_and_device_on() -> None:
    cell = PeepholeLSTMCell(3, 4, bias=False, dtype=torch.float64, device="meta")
    params = dict(cell.named_parameters())
    assert set(params) == {"weight_ih", "weight_hh", "weight_ci", "weight_cf", "weight_co"}
    assert {p.dtype for p in params.values()} == {torch.float64}
    assert {p.device.type for p in params.values()} == {"meta"}


def test_peephole_reset_parameters_zeroes_the_peepholes_again() -> None:
    cell = PeepholeLSTMCell(3, 4)
    with torch.no_grad():
        for name in ("weight_ci", "weight_cf", "weight_co"):
            getattr(cell, name).fill_(1.0)
    before = cell.weight_ih.clone()
    cell.reset_parameters()
    for name in ("weight_ci", "weight_cf", "weight_co"):
        assert torch.equal(getattr(cell, name), torch.zeros(4)), name
    assert not torch.equal(cell.weight_ih, before)  # the LSTM weights are drawn again


def test_peephole_cell_takes_an_unbatched_step() -> None:
    cell = PeepholeLSTMCell(3, 4).double()
    with torch.no_grad():
        cell.weight_co.normal_()
    x, h, c = _randn(3), _randn(4, seed=1), _randn(4, seed=2)
    h1, c1 = cell(x, (h, c))
    assert h1.shape == c1.shape == (4,)
    hb, cb = cell(x[None], (h[None], c[None]))
    assert torch.allclose(h1, hb[0]) and torch.allclose(c1, cb[0])


def test_hidden_jacobian_norms_of_a_gru_cell_match_autograd() -> None:
    torch.manual_seed(0)
    cell = GRUCell(2, 3).double()
    x, h0 = _randn(4, 2), _randn(3, seed=1)
    norms = hidden_jacobian_norms(cell, x, h0)

    def h_t(h: torch.Tensor, t: int) -> torch.Tensor:
        for step in range(t):
            h = cell(x[step], h)
        return h

    for t in range(1, 5):
        jac = torch.autograd.functional.jacobian(lambda h, t=t: h_t(h, t), h0)
        assert norms[t - 1].item() == pytest.approx(torch.linalg.matrix_norm(jac, ord=2).item())
    with pytest.raises(UserError, match="^hidden_jacobian_norms follows a state that is one tensor h"):
        hidden_jacobian_norms(LSTMCell(2, 3), x)


# ---- convolution and pooling layers (deepnn.layers.conv) ---------------------------------------------------


@pytest.mark.parametrize("size,out", [
    ((5, 4), (3, 2)),  # rows do not divide, columns do
    ((4, 5), (2, 3)),  # rows divide, columns do not
    ((7, 5), (3, 2)),  # neither
    ((6, 4), (3, 2)),  # both: plain average pooling
    ((5, 7), (None, 3)),  # None keeps that axis
    ((5, 7), (2, None)),
    ((5, 7), 1),  # global average pooling
    ((3, 3), 5),  # more outputs than inputs: overlapping windows of one
])
def test_adaptive_avg_pool_matches_torch(size: tuple[int, int], out) -> None:
    x = _randn(2, 3, *size)
    torch.testing.assert_close(scratch.AdaptiveAvgPool2d(out)(x), nn.AdaptiveAvgPool2d(out)(x))


def test_adaptive_avg_pool_builds_its_matrices_on_the_inputs_device() -> None:
    y = scratch.AdaptiveAvgPool2d((2, 3))(torch.zeros(1, 5, 7, device="meta"))
    assert y.device.type == "meta" and y.shape == (1, 2, 3)


@pytest.mark.parametrize("build,message", [
    (lambda: scratch.AvgPool2d(2, ceil_mode=True), "^the scratch AvgPool2d does not support ceil_mode=True"),
    (lambda: scratch.MaxPool2d(2, ceil_mode=True), "^the scratch MaxPool2d does not support ceil_mode=True"),
    (lambda: scratch.Conv2d(2, 2, 3, groups=2), "^the scratch Conv2d does not support groups=2"),
])
def test_unsupported_option_errors_name_the_layer(build, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build()


def test_positional_encoding_accepts_a_single_position() -> None:
    pe = PositionalEncoding(4, max_len=1)
    assert torch.equal(pe(torch.zeros(1, 1, 4))[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_positional_encoding_table_is_accurate_far_out() -> None:
    """The table is computed in float64 and stored in float32: exact to float32 rounding at position 4999."""
    pe = PositionalEncoding(8, max_len=5000)
    t = torch.arange(5000, dtype=torch.float64)[:, None]
    i = torch.arange(0, 8, 2, dtype=torch.float64)
    expected = torch.stack([torch.sin(t / 10000 ** (i / 8)), torch.cos(t / 10000 ** (i / 8))], dim=-1).flatten(1)
    assert (pe.table.double() - expected).abs().max().item() < 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_positional_encoding_keeps_the_inputs_dtype(dtype: torch.dtype) -> None:
    pe = PositionalEncoding(4, max_len=8)
    assert pe(torch.zeros(2, 3, 4, dtype=dtype)).dtype == dtype


def test_detach_state_error_names_the_type() -> None:
    from deepnn.layers import detach_state

    with pytest.raises(UserError, match="got str$"):
        detach_state("h")


def test_adaptive_avg_pool_takes_an_unbatched_map() -> None:
    x = _randn(3, 5, 7)  # (C, H, W)
    for out in ((2, 3), 1, (5, 7)):
        torch.testing.assert_close(scratch.AdaptiveAvgPool2d(out)(x), nn.AdaptiveAvgPool2d(out)(x))


@pytest.mark.parametrize("kernel", [(3, 5), (5, 3), (5, 5), (1, 7)])
def test_scratch_conv_same_padding_with_non_square_kernels(kernel: tuple[int, int]) -> None:
    torch.manual_seed(0)
    theirs = nn.Conv2d(2, 3, kernel, padding="same").double()
    ours = scratch.Conv2d(2, 3, kernel, padding="same").double()
    ours.load_state_dict(theirs.state_dict())
    x = _randn(1, 2, 6, 7)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("padding,message", [((1,), "^padding must be an int or a pair"),
                                             (-1, "^padding must be at least 0")])
def test_scratch_conv_rejects_a_bad_padding_when_built(padding, message: str) -> None:
    with pytest.raises(UserError, match=message):
        scratch.Conv2d(1, 1, 3, padding=padding)


def test_scratch_max_pool_rejects_a_malformed_dilation_by_name() -> None:
    with pytest.raises(UserError, match="^dilation must be an int or a pair"):
        scratch.MaxPool2d(2, dilation=(1, 1, 1))


def test_positional_encoding_default_max_len_is_512() -> None:
    pe = PositionalEncoding(4)
    assert pe.max_len == 512 and pe.table.shape == (512, 4)
