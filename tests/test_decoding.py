"""``deepnn.decoding``: the next-token rule (greedy, temperature, top-k, top-p nucleus) as properties over
random logits (Hypothesis), seeded reproducibility, and :func:`generate` with stateful models (only the
new token fed back) against the same model re-fed its whole context (the stateless path a Transformer uses)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deepnn.decoding import beam_search, filter_logits, generate, greedy_decode, sample_next, sequence_log_prob
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


# ---- seq2seq decoders: greedy_decode, beam_search (T4) ----------------------------------------------------

START, END, PAD = 1, 2, 0


class _GRUDecoder(nn.Module):
    """A random tiny seq2seq decoder reading a tuple memory ``(memory (B, S, d), padding (B, S))``: the
    masked mean of the memory starts a GRU over the embedded prefix; the end token grows likelier with the
    position, so outputs end at various lengths; it never outputs the start or padding token."""

    def __init__(self, vocab: int = 7, d: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.gru = nn.GRU(d, d, batch_first=True)
        self.head = nn.Linear(d, vocab)

    def forward(self, memory, ys: torch.Tensor) -> torch.Tensor:
        mem, padding = memory if isinstance(memory, tuple) else (memory, None)
        assert mem.shape[0] == ys.shape[0] and (padding is None or padding.shape[0] == ys.shape[0])
        keep = torch.ones(mem.shape[:2]) if padding is None else (~padding).to(mem.dtype)  # (B, S)
        h0 = (mem * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)  # (B, d)
        logits = self.head(self.gru(self.embed(ys), h0[None].contiguous())[0]) * 3  # (B, t, V), peaked
        ending = torch.zeros(logits.shape[-1], dtype=logits.dtype)
        ending[END] = 0.4
        never = torch.zeros(logits.shape[-1], dtype=logits.dtype)
        never[[PAD, START]] = -math.inf
        return logits + torch.arange(ys.shape[1], dtype=logits.dtype)[:, None] * ending + never


def _gru(seed: int) -> _GRUDecoder:
    torch.manual_seed(seed)
    return _GRUDecoder().double().eval()


def _table_step(table: dict[tuple[int, ...], dict[int, float]], vocab: int = 10):
    """A decoder given by hand: ``table[prefix]`` maps next tokens to probabilities (others 0); a prefix not in
    the table ends for sure. Logits are the log-probabilities, so log_softmax gives them back."""

    def step(memory, ys: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*ys.shape, vocab), -math.inf, dtype=torch.float64)
        for b, row in enumerate(ys.tolist()):
            for i in range(len(row)):
                for token, p in table.get(tuple(row[: i + 1]), {END: 1.0}).items():
                    logits[b, i, token] = math.log(p)
        return logits

    return step


def _length(row: list[int]) -> int:
    """Tokens up to the end token included, and checks that only padding follows it."""
    if END not in row:
        return len(row)
    n = row.index(END) + 1
    assert all(token == PAD for token in row[n:]), row
    return n


@pytest.mark.parametrize("seed", [0, 1, 4, 6])
def test_beam_size_one_is_greedy_decoding(seed) -> None:
    model = _gru(seed)
    memory = torch.randn(4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for max_len in (1, 3, 12):
        greedy = greedy_decode(model, memory, START, END, max_len, pad_token=PAD)
        for alpha in (0.0, 0.6, 2.0):
            beam = beam_search(model, memory, START, END, max_len, beam_size=1, length_penalty=alpha, pad_token=PAD)
            assert torch.equal(beam, greedy), (max_len, alpha)


def test_beam_search_finds_what_greedy_misses() -> None:
    # greedy takes 3 (0.6) and then can only reach 0.6 · 0.4 = 0.24; beam 2 keeps 4 (0.4) and reaches 0.4 · 0.9 = 0.36
    table = {(START,): {3: 0.6, 4: 0.4},
             (START, 3): {5: 0.4, 6: 0.3, 7: 0.3},
             (START, 4): {8: 0.9, 9: 0.1}}
    step = _table_step(table)
    memory = torch.zeros(1, 1)
    greedy = greedy_decode(step, memory, START, END, max_len=5, pad_token=PAD)
    beam = beam_search(step, memory, START, END, max_len=5, beam_size=2, pad_token=PAD)
    assert greedy.tolist() == [[3, 5, END]] and beam.tolist() == [[4, 8, END]]
    greedy_lp = sequence_log_prob(step, memory, greedy, START, end_token=END)
    beam_lp = sequence_log_prob(step, memory, beam, START, end_token=END)
    assert beam_lp.item() == pytest.approx(math.log(0.36), abs=1e-6) and beam_lp > greedy_lp
    assert greedy_lp.item() == pytest.approx(math.log(0.24), abs=1e-6)
    assert sequence_log_prob(step, memory, torch.tensor([[4, 8, END, PAD]]), START, end_token=END) == beam_lp
    assert beam_search(step, memory, START, END, 5, beam_size=1, pad_token=PAD).tolist() == greedy.tolist()


def test_length_penalty_trades_log_probability_for_length() -> None:
    # short: [END] with p = 0.4; long: [3, 4, END] with p = 0.6 · 0.5 = 0.3: less likely, but longer
    step = _table_step({(START,): {END: 0.4, 3: 0.6}, (START, 3): {4: 0.5, 5: 0.3, END: 0.2}})
    memory = torch.zeros(1, 1)

    def lp(length: int, alpha: float) -> float:  # GNMT, Wu et al. 2016
        return ((5 + length) / 6) ** alpha

    short, long = math.log(0.4), math.log(0.3)
    for alpha in (0.0, 0.6, 2.0):
        winner = [END] if short / lp(1, alpha) > long / lp(3, alpha) else [3, 4, END]
        out = beam_search(step, memory, START, END, max_len=6, beam_size=2, length_penalty=alpha, pad_token=PAD)
        assert out.tolist()[0][: len(winner)] == winner and set(out.tolist()[0][len(winner):]) <= {PAD}, alpha
    assert short / lp(1, 0.0) > long / lp(3, 0.0)  # plain log-probability: the short one
    assert short / lp(1, 0.6) > long / lp(3, 0.6)  # -0.916 > -1.013: GNMT's 0.6 still prefers it
    assert short / lp(1, 2.0) < long / lp(3, 2.0)  # -0.916 < -0.677: a large penalty prefers the long one
    # cut at max_len = 2, the live [3, 4] (no end token, |Y| = 2) competes as is: -1.204 / (7/6)^2 = -0.885 > -0.916
    assert long / lp(2, 2.0) > short
    assert beam_search(step, memory, START, END, 2, beam_size=2, length_penalty=2.0).tolist() == [[3, 4]]
    assert beam_search(step, memory, START, END, 2, beam_size=2, length_penalty=0.0).tolist() == [[END]]


def test_beam_search_stops_when_nothing_live_can_win() -> None:
    """The stopping rule: a sentence is over with beam_size finished hypotheses, or as soon as no live one can
    beat its best finished one (s ≤ 0 only falls, so a live hypothesis scores at best s / lp at one end of its
    remaining lengths); the result is the one a search run to max_len gives."""
    table = {(START,): {END: 0.4, 3: 0.6}, (START, 3): {4: 0.5, 5: 0.3, END: 0.2}}
    calls: list[int] = []

    def step(memory, ys):
        calls.append(ys.shape[1])
        return _table_step(table)(memory, ys)

    memory = torch.zeros(1, 1)
    # α = 0: after step 2 the live [3, 4] (log 0.3) and [3, 5] (log 0.18) are below the finished [END] (log 0.4)
    assert beam_search(step, memory, START, END, 6, beam_size=2, length_penalty=0.0).tolist() == [[END]]
    assert calls == [1, 2]  # one finished hypothesis only, yet over
    calls.clear()  # α = 2: [3, 4] could still win; at step 3 two more finish, 3 ≥ beam_size
    assert beam_search(step, memory, START, END, 6, beam_size=2, length_penalty=2.0).tolist() == [[3, 4, END]]
    assert calls == [1, 2, 3]


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_batch_with_tuple_memory_equals_each_sentence_alone(decoder) -> None:
    """Sentences of different source lengths, padded and masked in one batch, decode as they do alone; every
    output ends with its end token (or max_len) and padding after it."""
    model = _gru(5)
    gen = torch.Generator().manual_seed(5)
    sources = [torch.randn(n, 6, dtype=torch.float64, generator=gen) for n in (2, 5, 3, 4, 1)]
    memory = nn.utils.rnn.pad_sequence(sources, batch_first=True)  # (B, S, d)
    padding = torch.arange(memory.shape[1])[None] >= torch.tensor([len(s) for s in sources])[:, None]  # (B, S)

    def decode(memory, max_len: int) -> torch.Tensor:
        if decoder == "greedy":
            return greedy_decode(model, memory, START, END, max_len, pad_token=PAD)
        return beam_search(model, memory, START, END, max_len, beam_size=3, pad_token=PAD)

    batch = decode((memory, padding), 10)
    assert batch.shape[0] == len(sources) and batch.shape[1] <= 10
    lengths = [_length(row) for row in batch.tolist()]
    assert batch.shape[1] == max(lengths) and any(END in row for row in batch.tolist())
    for b, source in enumerate(sources):
        alone = decode((source[None], torch.zeros(1, len(source), dtype=torch.bool)), 10)
        assert alone.shape[1] == lengths[b]
        assert batch[b, : lengths[b]].tolist() == alone[0].tolist()
        assert torch.equal(decode(source[None], 10), alone)  # a plain tensor memory: the same


def test_beam_search_scores_its_choice_by_sequence_log_prob() -> None:
    """The chosen hypothesis beats every other finished candidate it could have returned: compare with all
    sequences of the tiny vocabulary up to length 3 (exhaustive search) with length_penalty 0 and a wide beam."""
    model = _gru(7)
    memory = torch.randn(1, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    V = 7
    out = beam_search(model, memory, START, END, max_len=3, beam_size=V ** 2, length_penalty=0.0, pad_token=PAD)
    best = sequence_log_prob(model, memory, out, START, end_token=END)
    every = [[a] for a in range(V)] + [[a, b] for a in range(V) for b in range(V)]
    every += [[a, b, c] for a in range(V) for b in range(V) for c in range(V)]
    every = [y for y in every if END not in y[:-1] and (y[-1] == END or len(y) == 3)]  # ended, or cut at max_len
    scores = [sequence_log_prob(model, memory, torch.tensor([y]), START).item() for y in every]
    assert best.item() == pytest.approx(max(scores), abs=1e-5)


def test_decoder_errors() -> None:
    step = _table_step({})
    memory = torch.zeros(2, 1)
    for kwargs, match in [({"beam_size": 0}, "beam_size"), ({"beam_size": 2.0}, "beam_size"),
                          ({"length_penalty": float("inf")}, "length_penalty")]:
        with pytest.raises(UserError, match=match):
            beam_search(step, memory, START, END, 3, **kwargs)
    for decode in (greedy_decode, beam_search):
        with pytest.raises(UserError, match="max_len"):
            decode(step, memory, START, END, 0)
        with pytest.raises(UserError, match=r"\(B, t, V\)"):
            decode(lambda m, ys: torch.zeros(ys.shape[0], 3), memory, START, END, 3)
        with pytest.raises(UserError, match="memory"):
            decode(step, ("not a tensor",), START, END, 3)
    with pytest.raises(UserError, match="end_token"):
        beam_search(step, memory, START, 10, 3)
    with pytest.raises(UserError, match=r"\(B, T\)"):
        sequence_log_prob(step, memory, torch.tensor([3, 4]), START)
