"""The character-level language models of lecture item R3 (``deepnn.models.charlm``): each cell
learns "hell" → "ello" and greedily samples "hello" from "h"; the shapes; seeded sampling; the errors;
and why the hidden state is needed (a memoryless model cannot tell the two "l"s apart). The registered
:class:`CharLM` models: shapes, the state carried across calls, truncated BPTT with ``detach_state``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from deepnn.errors import UserError
from deepnn.models import CharLM, CharRNN, create_model, detach_state, hello_example, list_models, sample

VOCAB = "helo"
CELLS = ("rnn", "lstm", "gru")
MEMORYLESS_FLOOR = math.log(2) / 2  # best mean cross-entropy without memory: p = 1/2 for each "l"


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([[VOCAB.index(ch) for ch in text]])


@pytest.mark.parametrize("cell", CELLS)
def test_r3_hello_example_learns_hello(cell: str) -> None:
    result = hello_example(cell)
    assert result.sample == "hello"
    assert result.predictions == "ello"
    assert len(result.losses) == 100
    assert result.losses[0] > 1.0  # near ln 4 = 1.386 at random init
    assert result.losses[-1] < 0.01  # far below the memoryless floor of 0.347
    assert isinstance(result.model, CharRNN) and result.model.cell_type == cell


@pytest.mark.parametrize("cell", CELLS)
def test_r3_loss_decreases(cell: str) -> None:
    losses = hello_example(cell, steps=60).losses
    assert losses[-1] < losses[0] / 50
    # Adam may wobble, but every 10 steps the loss is lower than 10 steps before
    assert all(later < earlier for earlier, later in zip(losses[::10], losses[10::10]))


def test_r3_hello_example_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    a, b = hello_example("gru", steps=5, seed=3), hello_example("gru", steps=5, seed=3)
    assert a.losses == b.losses
    assert hello_example("gru", steps=5, seed=4).losses != a.losses
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the global RNG was not consumed


@pytest.mark.parametrize("cell", CELLS)
def test_r3_char_rnn_shapes_and_state(cell: str) -> None:
    torch.manual_seed(0)
    model = CharRNN(4, 6, cell)
    tokens = torch.randint(0, 4, (3, 5))
    logits, state = model(tokens)
    assert logits.shape == (3, 5, 4)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (3, 6)
    if cell == "lstm":
        assert state[1].shape == (3, 6)
    # carrying the state over gives the same logits as one long run
    first, state = model(tokens[:, :2])
    rest, _ = model(tokens[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), logits)
    # the output layer is dense on the hidden states: o_t = W_ho h_t + b_o, the last step's h is h_T
    torch.testing.assert_close(logits[:, -1], model.output(h))


def test_r3_input_is_one_hot() -> None:
    """Token id k enters the cell as column k of W_hx: the model equals the cell run on one-hot vectors."""
    torch.manual_seed(0)
    model = CharRNN(4, 3, "rnn")
    tokens = _ids("hell")
    h = None
    expected = []
    for k in tokens[0].tolist():
        h = torch.tanh(model.cell.weight_ih[:, k] + model.cell.bias_ih + model.cell.bias_hh
                       + (0 if h is None else model.cell.weight_hh @ h))
        expected.append(model.output.weight @ h + model.output.bias)
    torch.testing.assert_close(model(tokens)[0][0], torch.stack(expected))


def test_r3_sample_is_reproducible_and_stays_in_the_vocabulary() -> None:
    torch.manual_seed(0)
    model = CharRNN(4, 8, "lstm")  # untrained: the draws are spread over all four characters

    def draw(seed: int, temperature: float = 1.0) -> str:
        return sample(model, "he", 40, VOCAB, temperature=temperature, generator=torch.Generator().manual_seed(seed))

    text = draw(0)
    assert text == draw(0)
    assert text != draw(1)
    assert len(text) == 42 and text.startswith("he")
    assert set(text) <= set(VOCAB)
    assert len(set(text[2:])) > 1  # really sampling, not greedy
    assert sample(model, "h", 0, VOCAB) == "h"
    # temperature 0 is greedy, and near 0 sampling agrees with it
    greedy = sample(model, "he", 10, VOCAB, temperature=0)
    assert draw(5, temperature=1e-4)[:12] == greedy


def test_r3_sample_from_trained_model_at_low_temperature_is_hello() -> None:
    model = hello_example("rnn").model
    generator = torch.Generator().manual_seed(0)
    assert sample(model, "h", 4, VOCAB, temperature=0.5, generator=generator) == "hello"
    assert sample(model, "hel", 2, VOCAB, temperature=0) == "hello"


def test_r3_a_memoryless_predictor_gets_at_most_three_of_four() -> None:
    """Any function of the current character alone, over all 4^4 of them, predicts at most 3 of "ello"."""
    best = max(
        sum(table[VOCAB.index(x)] == y for x, y in zip("hell", "ello"))
        for table in itertools.product(VOCAB, repeat=len(VOCAB))
    )
    assert best == 3


def test_r3_zeroed_recurrence_cannot_learn_hello() -> None:
    """An Elman RNN with W_hh = 0 (frozen) sees only x_t: both "l"s give the same prediction, and its loss
    stalls at the memoryless floor ln 2 / 2, while the same model with its recurrence learns (test above)."""
    torch.manual_seed(0)
    model = CharRNN(4, 8, "rnn")
    with torch.no_grad():
        model.cell.weight_hh.zero_()
    model.cell.weight_hh.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    inputs, targets = _ids("hell"), _ids("ello")
    for _ in range(150):
        loss = F.cross_entropy(model(inputs)[0][0], targets[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits = model(inputs)[0][0]
    torch.testing.assert_close(logits[2], logits[3])  # the two "l"s are indistinguishable
    predictions = "".join(VOCAB[i] for i in logits.argmax(-1).tolist())
    assert sum(p == t for p, t in zip(predictions, "ello")) == 3
    final = F.cross_entropy(logits, targets[0]).item()
    assert MEMORYLESS_FLOOR - 1e-6 < final < MEMORYLESS_FLOOR + 0.01  # reached the floor, not below it
    assert hello_example("rnn").losses[-1] < MEMORYLESS_FLOOR / 10


def test_r3_char_models_are_language_models_not_image_models() -> None:
    assert {"char_rnn", "char_lstm", "char_gru", "hello"} <= set(list_models(task="language_model"))
    assert not any("char" in name or name == "hello" for name in list_models(task="classification"))
    assert isinstance(create_model("hello"), CharRNN) and create_model("hello").vocab_size == 4


def test_r3_errors() -> None:
    with pytest.raises(UserError, match="unknown cell 'transformer'.*rnn, lstm, gru"):
        CharRNN(4, 8, "transformer")
    with pytest.raises(UserError, match="unknown cell"):
        hello_example("elman")
    model = CharRNN(4, 8)
    with pytest.raises(UserError, match="prefix"):
        sample(model, "", 4, VOCAB)
    with pytest.raises(UserError, match=r"'x'.*\['h', 'e', 'l', 'o'\]"):
        sample(model, "hex", 4, VOCAB)
    with pytest.raises(UserError, match="4 output classes"):
        sample(model, "h", 4, "hel")
    with pytest.raises(UserError, match="repeats"):
        sample(model, "h", 4, "hell")
    with pytest.raises(UserError, match="temperature"):
        sample(model, "h", 4, VOCAB, temperature=-1.0)
    with pytest.raises(UserError, match="length"):
        sample(model, "h", -1, VOCAB)
    with pytest.raises(UserError, match=r"\(B, T\)"):
        model(torch.tensor([0, 1, 2]))
    with pytest.raises(UserError, match=r"\[0, 4\)"):
        model(torch.tensor([[0, 4]]))
    with pytest.raises(UserError, match="steps"):
        hello_example(steps=0)


# ---- the registered CharLM models ---------------------------------------------------------------------------

LM_NAMES = ("char_rnn", "char_lstm", "char_gru")


def _lm(name: str, **kwargs) -> CharLM:
    torch.manual_seed(0)
    return create_model(name, vocab_size=7, hidden_size=6, **kwargs).double()


@pytest.mark.parametrize("name", LM_NAMES)
@pytest.mark.parametrize("embedding_dim", [None, 5])
@pytest.mark.parametrize("impl", ["fused", "scratch"])
def test_char_lm_shapes_and_state_carried(name: str, embedding_dim, impl: str) -> None:
    model = _lm(name, num_layers=2, embedding_dim=embedding_dim, impl=impl).eval()
    assert model.vocab_size == 7 and (model.embedding is None) == (embedding_dim is None)
    tokens = torch.randint(0, 7, (3, 8))
    logits, state = model(tokens)
    assert logits.shape == (3, 8, 7)
    for s in (state if isinstance(state, tuple) else (state,)):
        assert s.shape == (2, 3, 6)  # (num_layers, B, H)
    assert isinstance(state, tuple) == (name == "char_lstm")
    first, mid = model(tokens[:, :5])
    rest, end = model(tokens[:, 5:], mid)  # two halves, the state passed on = one run
    torch.testing.assert_close(torch.cat([first, rest], dim=1), logits)
    for a, b in zip(end if isinstance(end, tuple) else (end,), state if isinstance(state, tuple) else (state,)):
        torch.testing.assert_close(a, b)
    fresh, _ = model(tokens[:, 5:])  # without the state, the second half differs
    assert not torch.allclose(fresh, rest)


def test_char_lm_one_hot_input_is_columns_of_w_ih() -> None:
    model = _lm("char_rnn", num_layers=1).eval()
    tokens = torch.tensor([[3, 0, 6]])
    h, expected = torch.zeros(6, dtype=torch.float64), []
    rnn = model.rnn
    for k in tokens[0].tolist():
        h = torch.tanh(rnn.weight_ih_l0[:, k] + rnn.bias_ih_l0 + rnn.bias_hh_l0 + rnn.weight_hh_l0 @ h)
        expected.append(model.output.weight @ h + model.output.bias)
    torch.testing.assert_close(model(tokens)[0][0], torch.stack(expected))


@pytest.mark.parametrize("name", LM_NAMES)
def test_detach_state_cuts_the_graph(name: str) -> None:
    """Truncated BPTT: with the state detached, the loss of the second half sends no gradient into the
    first half's computation; without detaching it does."""
    model = _lm(name, num_layers=2, embedding_dim=4)
    tokens = torch.randint(0, 7, (2, 10))
    for detach, expect_grad in ((True, False), (False, True)):
        emb = model.embedding(tokens[:, :5])
        emb.retain_grad()
        hidden, state = model.rnn(emb)
        if detach:
            state = model.detach_state(state)
            for s in (state if isinstance(state, tuple) else (state,)):
                assert not s.requires_grad and s.grad_fn is None
        logits, _ = model(tokens[:, 5:], state)
        logits.sum().backward()
        reached = emb.grad is not None and emb.grad.abs().sum() > 0
        assert reached == expect_grad
        model.zero_grad()
    assert detach_state(None) is None
    t = torch.ones(2, requires_grad=True) * 2
    h, c = detach_state((t, t))
    assert not h.requires_grad and torch.equal(h, t.detach())
    with pytest.raises(UserError, match="detach_state"):
        detach_state("h")


def test_char_lm_scratch_equals_fused() -> None:
    fused = _lm("char_lstm", num_layers=2, embedding_dim=3).eval()
    scratch = _lm("char_lstm", num_layers=2, embedding_dim=3, impl="scratch").eval()
    scratch.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 7, (2, 9))
    torch.testing.assert_close(scratch(tokens)[0], fused(tokens)[0])


def test_char_lm_sample_and_errors() -> None:
    model = _lm("char_gru")
    vocab = "abcdefg"
    text = sample(model, "ab", 12, vocab, top_k=3, generator=torch.Generator().manual_seed(0))
    assert len(text) == 14 and set(text) <= set(vocab)
    assert text == sample(model, "ab", 12, vocab, top_k=3, generator=torch.Generator().manual_seed(0))
    assert model.training  # sampling restored the mode
    with pytest.raises(UserError, match=r"\[0, 7\)"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(UserError, match=r"\[0, 7\)"):
        model.eval()(torch.tensor([[-1, 2]]))
    with pytest.raises(UserError, match="unknown cell"):
        CharLM(7, cell="transformer")
    with pytest.raises(UserError, match="embedding_dim"):
        CharLM(7, embedding_dim=0)
    with pytest.raises(UserError, match="unknown impl"):
        create_model("char_lstm", vocab_size=7, impl="cuda")
    with pytest.raises(UserError, match="needs vocab_size"):
        create_model("char_lstm")  # the vocabulary size comes from the data
