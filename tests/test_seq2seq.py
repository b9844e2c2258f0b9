"""The assembled sequence models (T1, T4, T5): they learn, they are causal, padding does not leak, the fused
attention equals ours, positions are the paper's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepnn.data.pairs import BOS, EOS, PAD
from deepnn.decoding import beam_search, greedy_decode
from deepnn.errors import UserError
from deepnn.layers import PositionalEncoding, shift_right
from deepnn.models import create_model


def reverse_batch(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 2-6 random symbols (ids 4-11) + EOS, targets their reverse + EOS, padded with PAD."""
    src = torch.full((n, 7), PAD)
    tgt = torch.full((n, 7), PAD)
    for i in range(n):
        k = int(torch.randint(2, 7, (1,), generator=g))
        seq = torch.randint(4, 12, (k,), generator=g)
        src[i, :k], src[i, k] = seq, EOS
        tgt[i, :k], tgt[i, k] = seq.flip(0), EOS
    return src, tgt


def train_reverse(model: torch.nn.Module, steps: int, lr: float) -> float:
    """Teacher-forced training on the reverse task; returns the greedy exact-match rate on fresh sentences."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        src, tgt = reverse_batch(g, 64)
        logits = model(src, shift_right(tgt, BOS))
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src, tgt = reverse_batch(torch.Generator().manual_seed(1), 200)
    with torch.no_grad():
        out = greedy_decode(model.decode, model.encode(src), BOS, EOS, max_len=8, pad_token=PAD)
    out = F.pad(out, (0, 7 - out.shape[1]), value=PAD)[:, :7]
    return float((out == tgt).all(1).float().mean())


def test_transformer_learns_to_reverse():
    torch.manual_seed(0)
    model = create_model("transformer_mt", vocab_size=12, d_model=32, nhead=2, num_encoder_layers=2,
                         num_decoder_layers=2, dim_feedforward=64, dropout=0.0, max_len=16)
    assert train_reverse(model, 400, 2e-3) == 1.0


def test_rnn_attention_learns_to_reverse():
    torch.manual_seed(0)
    model = create_model("seq2seq_attn", vocab_size=12, embedding_dim=16, hidden_size=32, attention_size=16,
                         dropout=0.0, max_len=16)
    assert train_reverse(model, 300, 1e-2) == 1.0


def tiny(name: str, **kw):
    torch.manual_seed(0)
    if name == "transformer_mt":
        return create_model(name, vocab_size=30, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                            dim_feedforward=32, dropout=0.0, **kw).eval()
    return create_model(name, vocab_size=30, embedding_dim=8, hidden_size=16, attention_size=8, dropout=0.0,
                        **kw).eval()


@pytest.mark.parametrize("name", ["transformer_mt", "seq2seq_attn"])
def test_padding_does_not_leak(name):
    """Extra padding after a source, and padded rows in a batch, change no logit of the real positions."""
    model = tiny(name)
    src = torch.tensor([[5, 6, 7, EOS]])
    tgt_in = torch.tensor([[BOS, 8, 9]])
    alone = model(src, tgt_in)
    padded = model(torch.tensor([[5, 6, 7, EOS, PAD, PAD]]), tgt_in)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
    batch = model(torch.tensor([[5, 6, 7, EOS, PAD], [9, 8, 7, 6, EOS]]), tgt_in.repeat(2, 1))
    torch.testing.assert_close(batch[:1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["transformer_mt", "seq2seq_attn"])
def test_decoder_is_causal(name):
    """Teacher forcing in one pass is legitimate only if position t ignores the target tokens after t."""
    model = tiny(name)
    src = torch.tensor([[5, 6, 7, EOS]])
    a = model(src, torch.tensor([[BOS, 8, 9, 10]]))
    b = model(src, torch.tensor([[BOS, 8, 20, 21]]))
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2:], b[:, 2:])


def test_char_transformer_is_causal():
    torch.manual_seed(0)
    model = create_model("char_transformer", vocab_size=20, d_model=16, nhead=2, num_layers=2, dim_feedforward=32,
                         dropout=0.0, max_len=16).eval()
    x = torch.randint(0, 20, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 20
    (a, state), (b, _) = model(x), model(y)
    assert state is None
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("name", ["transformer_mt", "char_transformer"])
def test_fused_attention_equals_ours(name):
    """attention="sdpa" (PyTorch's kernel) and "scratch" (deepnn.layers.attention) give the same outputs and
    gradients for the same weights."""
    kw = dict(vocab_size=30, d_model=16, nhead=2, dim_feedforward=32, dropout=0.0)
    kw |= {"num_layers": 2} if name == "char_transformer" else {}
    torch.manual_seed(0)
    fused = create_model(name, attention="sdpa", **kw)
    torch.manual_seed(0)
    ours = create_model(name, attention="scratch", **kw)
    ours.load_state_dict(fused.state_dict())
    x = torch.randint(4, 30, (3, 9))
    x[0, 6:] = PAD
    args = (x, torch.randint(4, 30, (3, 5))) if name == "transformer_mt" else (x,)
    out_f, out_o = (m(*args) for m in (fused, ours))
    out_f, out_o = (o[0] if isinstance(o, tuple) else o for o in (out_f, out_o))
    torch.testing.assert_close(out_f, out_o, atol=1e-5, rtol=1e-5)
    out_f.square().sum().backward()
    out_o.square().sum().backward()
    for (n, p), q in zip(fused.named_parameters(), ours.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=n)
    with pytest.raises(UserError, match="unknown attention"):
        create_model(name, **{**kw, "attention": "flash"})


def test_sinusoidal_positions_are_the_papers():
    pe = PositionalEncoding(6, max_len=10)
    table = pe(torch.zeros(1, 10, 6))[0]
    for t in (0, 3, 9):
        for i in range(3):
            assert table[t, 2 * i].item() == pytest.approx(math.sin(t / 10000 ** (2 * i / 6)), abs=1e-6)
            assert table[t, 2 * i + 1].item() == pytest.approx(math.cos(t / 10000 ** (2 * i / 6)), abs=1e-6)
    learned = PositionalEncoding(6, max_len=10, kind="learned")
    assert learned.table.requires_grad and learned.table.shape == (10, 6)
    with pytest.raises(UserError, match="longer than the model's max_len 10"):
        pe(torch.zeros(1, 11, 6))
    with pytest.raises(UserError, match="unknown positional encoding"):
        PositionalEncoding(6, kind="rotary")


def test_positions_matter():
    """Without positions a Transformer encoder could not tell "a b" from "b a"; with them it can."""
    model = tiny("transformer_mt")
    tgt_in = torch.tensor([[BOS, 8]])
    a = model(torch.tensor([[5, 6, EOS]]), tgt_in)
    b = model(torch.tensor([[6, 5, EOS]]), tgt_in)
    assert not torch.allclose(a, b)


def test_tied_embeddings():
    model = tiny("transformer_mt")
    assert model.output.weight is model.embed.tokens.weight
    untied = create_model("transformer_mt", vocab_size=30, d_model=16, nhead=2, dim_feedforward=32,
                          tie_embeddings=False)
    assert untied.output.weight is not untied.embed.tokens.weight


@pytest.mark.parametrize("name", ["transformer_mt", "seq2seq_attn"])
def test_beam_one_is_greedy_on_the_models(name):
    model = tiny(name)
    src = torch.tensor([[5, 6, 7, EOS], [9, 8, EOS, PAD]])
    with torch.no_grad():
        memory = model.encode(src)
        greedy = greedy_decode(model.decode, memory, BOS, EOS, 6)
        beam = beam_search(model.decode, memory, BOS, EOS, 6, beam_size=1)
    assert torch.equal(greedy, beam)


def test_bad_inputs():
    model = tiny("transformer_mt")
    with pytest.raises(UserError, match="LongTensor"):
        model(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(UserError, match=r"must lie in \[0, 30\)"):
        model(torch.tensor([[31, EOS]]), torch.tensor([[BOS]]))
    with pytest.raises(UserError, match="pad_id"):
        create_model("transformer_mt", vocab_size=10, pad_id=10)


def test_char_transformer_generates_within_its_window():
    """generate() feeds a stateless model its whole context, cropped to the model's max_context by default."""
    from deepnn.decoding import generate

    torch.manual_seed(0)
    model = create_model("char_transformer", vocab_size=20, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                         max_len=8).eval()
    out = generate(model, torch.randint(0, 20, (2, 5)), 12, greedy=True)  # 17 tokens: past the 8-token window
    assert out.shape == (2, 12)
    with pytest.raises(UserError, match="longer than the model's max_len 8"):
        generate(model, torch.randint(0, 20, (1, 9)), 1, max_context=9)


def test_ff_dropout_and_attention_choice_reach_every_layer():
    model = create_model("transformer_mt", vocab_size=30, d_model=16, nhead=2, dim_feedforward=32, dropout=0.1,
                         ff_dropout=0.0, attention="sdpa")
    layers = [*model.encoder, *model.decoder]
    assert all(layer.dropout.p == 0.0 and layer.dropout1.p == 0.1 for layer in layers)
    assert {m.impl for m in model.modules() if hasattr(m, "keep_weights")} == {"sdpa"}
    assert model.embed.dropout.p == 0.1
    with pytest.raises(UserError, match="ff_dropout"):
        create_model("transformer_mt", vocab_size=30, ff_dropout=1.5)


def test_char_transformer_exports_to_onnx(tmp_path):
    """F1 for the Transformer: the causal model, exported and run in ONNX Runtime, gives PyTorch's logits."""
    pytest.importorskip("onnxruntime")
    from deepnn.export import LogitsOnly, check_onnx, export_onnx

    torch.manual_seed(0)
    model = create_model("char_transformer", vocab_size=20, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                         max_len=16).eval()
    wrapped = LogitsOnly(model).eval()
    path = export_onnx(wrapped, torch.randint(0, 20, (2, 16)), tmp_path / "char.onnx", input_name="tokens")
    assert check_onnx(path, wrapped, torch.randint(0, 20, (4, 16)), input_name="tokens") < 1e-4
