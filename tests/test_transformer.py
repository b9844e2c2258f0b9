"""Transformer layers from ``deepnn.layers.transformer`` (lecture items T4, T5) against PyTorch:
:class:`TransformerEncoderLayer` / :class:`TransformerDecoderLayer` against ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer`` with the same weights (outputs, input and parameter gradients; post-norm and
pre-norm, relu and gelu, causal and padding masks, eval and train mode), causality of the decoder, greedy
decoding against a scripted decoder, and teacher forcing against step-by-step decoding on gold prefixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnn.errors import UserError
from deepnn.layers import (
    MultiHeadAttention,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    causal_mask,
    greedy_decode,
    shift_right,
    teacher_forcing_logits,
)

B, T, S, D, H, FF = 2, 5, 6, 8, 2, 16
KW = dict(dim_feedforward=FF, dropout=0.0, dtype=torch.float64)


def _pair(ours_cls: type, theirs_cls: type, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = theirs_cls(D, H, batch_first=True, **KW, **kwargs)
    ours = ours_cls(D, H, **KW, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _padding(length: int) -> torch.Tensor:
    pad = torch.zeros(B, length, dtype=torch.bool)
    pad[1, -2:] = True  # the second sequence is 2 shorter
    return pad


def _compare(ours: nn.Module, theirs: nn.Module, inputs: list[torch.Tensor], ours_kw: dict, theirs_kw: dict,
             train: bool) -> None:
    ours.train(train)
    theirs.train(train)
    x1 = [t.clone().requires_grad_() for t in inputs]
    x2 = [t.clone().requires_grad_() for t in inputs]
    out1, out2 = ours(*x1, **ours_kw), theirs(*x2, **theirs_kw)
    assert out1.shape == out2.shape == inputs[0].shape
    assert torch.allclose(out1, out2, atol=1e-10)
    upstream = torch.randn_like(out1)
    out1.backward(upstream)
    out2.backward(upstream)
    for a, b in zip(x1, x2):
        assert torch.allclose(a.grad, b.grad, atol=1e-10)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, theirs_params[name].grad, atol=1e-10), name


# ---- T4: the layers against PyTorch -----------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("masks", ["none", "causal", "causal_flag", "padding"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_t4_encoder_layer_matches_torch(norm_first: bool, activation: str, masks: str, train: bool) -> None:
    ours, theirs = _pair(TransformerEncoderLayer, nn.TransformerEncoderLayer, norm_first=norm_first,
                         activation=activation)
    src = torch.randn(B, T, D, dtype=torch.float64)
    ours_kw: dict = {}
    theirs_kw: dict = {}
    if masks == "causal":
        ours_kw = theirs_kw = {"src_mask": ~causal_mask(T), "is_causal": True}
    elif masks == "causal_flag":  # ours builds the mask itself; PyTorch needs it passed
        ours_kw, theirs_kw = {"is_causal": True}, {"src_mask": ~causal_mask(T), "is_causal": True}
    elif masks == "padding":
        ours_kw = theirs_kw = {"src_key_padding_mask": _padding(T)}
    _compare(ours, theirs, [src], ours_kw, theirs_kw, train)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("masks", ["none", "causal", "causal_flag", "padding", "causal_padding"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_t4_decoder_layer_matches_torch(norm_first: bool, activation: str, masks: str, train: bool) -> None:
    ours, theirs = _pair(TransformerDecoderLayer, nn.TransformerDecoderLayer, norm_first=norm_first,
                         activation=activation)
    tgt, memory = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, S, D, dtype=torch.float64)
    ours_kw: dict = {}
    theirs_kw: dict = {}
    if masks in ("causal", "causal_padding"):
        ours_kw = {"tgt_mask": ~causal_mask(T), "tgt_is_causal": True}
    elif masks == "causal_flag":
        ours_kw = {"tgt_is_causal": True}
    if masks != "none" and masks != "padding":
        theirs_kw = {"tgt_mask": ~causal_mask(T), "tgt_is_causal": True}
    if masks in ("padding", "causal_padding"):
        pads = {"tgt_key_padding_mask": _padding(T), "memory_key_padding_mask": _padding(S)}
        ours_kw, theirs_kw = {**ours_kw, **pads}, {**theirs_kw, **pads}
    _compare(ours, theirs, [tgt, memory], ours_kw, theirs_kw, train)


@pytest.mark.parametrize("cls, torch_cls", [(TransformerEncoderLayer, nn.TransformerEncoderLayer),
                                            (TransformerDecoderLayer, nn.TransformerDecoderLayer)])
def test_t4_initialisation_and_state_dict_are_torchs(cls: type, torch_cls: type) -> None:
    torch.manual_seed(1)
    theirs = torch_cls(D, H, dim_feedforward=FF, batch_first=True)
    after_theirs = torch.rand(3)
    torch.manual_seed(1)
    ours = cls(D, H, dim_feedforward=FF)
    assert torch.equal(torch.rand(3), after_theirs)  # building ours draws the same random numbers
    assert isinstance(ours.self_attn, MultiHeadAttention) and ours.self_attn.batch_first
    if cls is TransformerDecoderLayer:
        assert isinstance(ours.multihead_attn, MultiHeadAttention)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key in ours_sd:
        assert torch.equal(ours_sd[key], theirs_sd[key]), key
    torch.manual_seed(2)
    other = torch_cls(D, H, dim_feedforward=FF, batch_first=True)
    ours.load_state_dict(other.state_dict())  # PyTorch's weights into ours, and back
    theirs.load_state_dict(ours.state_dict())
    assert torch.equal(theirs.linear1.weight, other.linear1.weight)
    assert torch.equal(theirs.self_attn.in_proj_weight, other.self_attn.in_proj_weight)


def test_t4_decoder_is_causal() -> None:
    torch.manual_seed(0)
    layer = TransformerDecoderLayer(D, H, **KW).eval()
    tgt, memory = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, S, D, dtype=torch.float64)
    changed = tgt.clone()
    changed[:, 3:] = torch.randn(B, T - 3, D, dtype=torch.float64)  # new future tokens from position 3 on
    out, out_changed = layer(tgt, memory, tgt_is_causal=True), layer(changed, memory, tgt_is_causal=True)
    assert torch.allclose(out[:, :3], out_changed[:, :3], atol=1e-12)  # positions 0-2 do not see the change
    assert not torch.allclose(out[:, 3:], out_changed[:, 3:])
    unmasked, unmasked_changed = layer(tgt, memory), layer(changed, memory)  # without the mask they do
    assert not torch.allclose(unmasked[:, :3], unmasked_changed[:, :3])


def test_t4_unbatched_input_as_torch() -> None:
    ours, theirs = _pair(TransformerDecoderLayer, nn.TransformerDecoderLayer)
    tgt, memory = torch.randn(T, D, dtype=torch.float64), torch.randn(S, D, dtype=torch.float64)
    expected = theirs(tgt, memory, tgt_mask=~causal_mask(T))
    assert torch.allclose(ours(tgt, memory, tgt_is_causal=True), expected, atol=1e-10)


def test_t4_errors() -> None:
    with pytest.raises(UserError, match="batch first"):
        TransformerEncoderLayer(D, H, batch_first=False)
    with pytest.raises(UserError, match="unknown activation"):
        TransformerDecoderLayer(D, H, activation="tanh")
    with pytest.raises(UserError, match="multiple of nhead"):
        TransformerEncoderLayer(10, 3)
    layer = TransformerDecoderLayer(D, H, dim_feedforward=FF)
    with pytest.raises(UserError, match="same B and d_model"):
        layer(torch.randn(B, T, D), torch.randn(B + 1, S, D))
    with pytest.raises(UserError, match="boolean"):
        layer(torch.randn(B, T, D), torch.randn(B, S, D), tgt_mask=torch.zeros(T, T))
    with pytest.raises(UserError, match="max_len"):
        greedy_decode(lambda m, ys: torch.zeros(*ys.shape, 3), torch.zeros(B, 1), 1, 2, max_len=0)
    with pytest.raises(UserError, match=r"\(B, t, V\)"):
        greedy_decode(lambda m, ys: torch.zeros(ys.shape[0], 3), torch.zeros(B, 1), 1, 2, max_len=3)


# ---- T4: greedy decoding -----------------------------------------------------------------------------------

START, END, PAD, V = 1, 2, 0, 10


def _scripted(memory: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """A decoder whose memory is its script: position i predicts memory[:, i], whatever the prefix."""
    return F.one_hot(memory[:, : ys.shape[1]], V).double()  # (B, t, V)


def test_t4_greedy_decode_stops_at_the_end_token() -> None:
    script = torch.tensor([[5, 6, END, 7, 8, 9],
                           [7, END, 5, 5, 5, 5],
                           [3, 4, 5, END, 9, 9]])
    calls: list[int] = []

    def step(memory: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        calls.append(ys.shape[1])
        return _scripted(memory, ys)

    out = greedy_decode(step, script, start_token=START, end_token=END, max_len=6, pad_token=PAD)
    assert out.tolist() == [[5, 6, END, PAD], [7, END, PAD, PAD], [3, 4, 5, END]]
    assert calls == [1, 2, 3, 4]  # stopped as soon as every sequence had ended


def test_t4_greedy_decode_respects_max_len() -> None:
    script = torch.tensor([[5, 6, 7, 8, 9, END], [7, END, 5, 5, 5, 5]])
    out = greedy_decode(_scripted, script, start_token=START, end_token=END, max_len=3, pad_token=PAD)
    assert out.tolist() == [[5, 6, 7], [7, END, PAD]]  # the first never reached its end token


# ---- T5: teacher forcing, exposure bias ------------------------------------------------------------------

def test_t5_shift_right() -> None:
    targets = torch.tensor([[5, 6, 7, END], [8, END, PAD, PAD]])
    assert shift_right(targets, START).tolist() == [[START, 5, 6, 7], [START, 8, END, PAD]]
    with pytest.raises(UserError, match=r"\(B, T\)"):
        shift_right(torch.tensor([5, 6]), START)


class _TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, D, dtype=torch.float64)
        self.layer = TransformerDecoderLayer(D, H, **KW)
        self.head = nn.Linear(D, V, dtype=torch.float64)

    def forward(self, memory: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(self.embed(ys), memory, tgt_is_causal=True))


def test_t5_teacher_forcing_is_decoding_on_gold_prefixes() -> None:
    torch.manual_seed(0)
    model = _TinyDecoder().eval()
    memory = torch.randn(B, S, D, dtype=torch.float64)
    targets = torch.tensor([[5, 6, 7, END], [8, 9, END, PAD]])
    logits = teacher_forcing_logits(model, memory, targets, START)  # one parallel pass, (B, T, V)
    assert logits.shape == (B, 4, V)
    inputs = shift_right(targets, START)
    for t in range(4):  # the same as running the decoder on each gold prefix, one step at a time
        step = model(memory, inputs[:, : t + 1])[:, -1]
        assert torch.allclose(logits[:, t], step, atol=1e-10)


def test_t5_inference_feeds_back_its_own_predictions() -> None:
    """Exposure bias: the script's model predicts 9 where the gold says 6. Teacher forcing would feed the gold 6
    next; greedy decoding feeds the wrong 9, a prefix the model never saw in training."""
    gold = torch.tensor([[5, 6, 7, END]])
    script = torch.tensor([[5, 9, 7, END]])
    seen: list[list[int]] = []

    def step(memory: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        seen.append(ys[0].tolist())
        return _scripted(memory, ys)

    out = greedy_decode(step, script, start_token=START, end_token=END, max_len=10)
    assert out.tolist() == [[5, 9, 7, END]]
    assert seen[-1] == [START, 5, 9, 7]  # its own tokens
    assert shift_right(gold, START).tolist() == [[START, 5, 6, 7]]  # what teacher forcing feeds
