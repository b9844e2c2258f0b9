"""Behaviours of ``deepnn.ops`` that ``tests/test_ops.py`` left open, found by mutation testing
(``benchmarks/mutation.sh``, docs/testing.md): non-square inputs, the unbatched 1×1 convolution,
kernels larger than 3×3, float64 kernel learning, argument checks at their exact boundary, and the
device of the result. Each test pins one behaviour; all run in well under a second."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnn.errors import UserError
from deepnn.ops import (
    apply_kernels,
    conv1x1,
    conv2d,
    conv_output_shape,
    corr2d,
    learn_kernel,
    pool2d,
    sliding_windows,
    vertical_edge_example,
)
from deepnn.ops.windows import as_pair


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- corr2d ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 6), (6, 3), (4, 5)])
def test_corr2d_on_non_square_inputs_matches_torch(shape: tuple[int, int]) -> None:
    x, k = _randn(*shape), _randn(2, 2, seed=1)
    expected = F.conv2d(x[None, None], k[None, None])[0, 0]
    assert torch.allclose(corr2d(x, k), expected)


def test_corr2d_keeps_the_inputs_device() -> None:
    x, k = torch.zeros(4, 5, device="meta"), torch.zeros(2, 3, device="meta")
    y = corr2d(x, k)
    assert y.device == x.device and y.shape == (3, 3)


def test_corr2d_result_dtype_follows_type_promotion() -> None:
    assert corr2d(torch.ones(3, 3), torch.ones(2, 2, dtype=torch.float64)).dtype == torch.float64


# ---- conv1x1 ---------------------------------------------------------------------------------------------

def test_conv1x1_accepts_an_unbatched_input() -> None:
    x, w, b = _randn(3, 4, 5), _randn(2, 3, seed=1), _randn(2, seed=2)
    y = conv1x1(x, w, b)
    assert y.shape == (2, 4, 5)
    assert torch.allclose(y, F.conv2d(x[None], w[:, :, None, None], b)[0])


@pytest.mark.parametrize("x,w", [
    (torch.zeros(3, 4), torch.zeros(2, 3)),  # (H, W): no channel axis
    (torch.zeros(1, 1, 3, 4, 4), torch.zeros(2, 3)),  # 5-D
    (torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 1)),  # weight not (c_o, c_i)
])
def test_conv1x1_rejects_inputs_of_the_wrong_rank(x: torch.Tensor, w: torch.Tensor) -> None:
    with pytest.raises(UserError, match="conv1x1 takes"):
        conv1x1(x, w)


# ---- conv2d, pooling, windows: argument checks at their boundaries --------------------------------------

def test_conv2d_bias_must_have_one_entry_per_output_channel() -> None:
    x, w = torch.zeros(1, 1, 4, 4), torch.zeros(3, 1, 2, 2)
    assert conv2d(x, w, torch.zeros(3)).shape == (1, 3, 3, 3)
    for n in (2, 4):
        with pytest.raises(UserError, match=f"bias has {n} entries but there are 3 output channels"):
            conv2d(x, w, torch.zeros(n))


def test_pool2d_padding_may_be_exactly_half_the_window() -> None:
    x = _randn(1, 1, 5, 6)
    for kernel, padding in [(2, 1), ((4, 2), (2, 1))]:
        ours = pool2d(x, kernel, 1, padding)
        assert torch.equal(ours, F.max_pool2d(x, kernel, 1, padding))
    with pytest.raises(UserError, match="more than half"):
        pool2d(x, (4, 2), 1, (1, 2))


def test_sliding_windows_of_a_two_axis_input() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    windows = sliding_windows(x, (2, 3))
    assert windows.shape == (2, 2, 2, 3)
    assert torch.equal(windows[1, 1], x[1:3, 1:4])
    with pytest.raises(UserError, match=r"shape \(\.\.\., H, W\)"):
        sliding_windows(torch.zeros(4), 1)


def test_sliding_windows_pads_with_the_fill_value_on_each_side() -> None:
    x = torch.ones(2, 3)
    windows = sliding_windows(x, (1, 1), padding=(1, 2), fill=-5.0)
    padded = windows[..., 0, 0]
    assert padded.shape == (4, 7)
    assert (padded[0] == -5).all() and (padded[-1] == -5).all()
    assert (padded[:, :2] == -5).all() and (padded[:, -2:] == -5).all()
    assert (padded[1:3, 2:5] == 1).all()


def test_as_pair_accepts_ints_and_pairs_and_nothing_else() -> None:
    assert as_pair(3, "k") == (3, 3)
    assert as_pair((2, 5), "k") == (2, 5)
    assert as_pair([2, 5], "k") == (2, 5)
    assert as_pair((0, 0), "padding", 0) == (0, 0)
    for bad in [(1,), (1, 2, 3), (1.0, 2), True, (True, 1), "ab", None]:
        with pytest.raises(UserError, match="must be an int or a pair of ints"):
            as_pair(bad, "k")
    with pytest.raises(UserError, match="k must be at least 1 on both axes, got \\(1, 0\\)"):
        as_pair((1, 0), "k", 1)


def test_conv_output_shape_allows_a_kernel_exactly_as_large_as_the_padded_input() -> None:
    assert conv_output_shape((3, 4), (5, 6), pad_total=2) == (1, 1)
    with pytest.raises(UserError, match="larger than the padded input"):
        conv_output_shape((3, 4), (5, 7), pad_total=2)
    with pytest.raises(UserError, match="larger than the padded input 3×4 \\(input"):
        conv_output_shape((3, 4), (6, 1))  # one layer: no "at layer" in the message


# ---- apply_kernels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (2, 2)])
def test_apply_kernels_rejects_a_kernel_with_any_even_side(shape: tuple[int, int]) -> None:
    with pytest.raises(UserError, match="odd sides"):
        apply_kernels(torch.zeros(6, 6), {"k": torch.ones(*shape)})


@pytest.mark.parametrize("shape", [(5, 5), (5, 3), (3, 7)])
def test_apply_kernels_keeps_the_size_with_larger_kernels(shape: tuple[int, int]) -> None:
    image = _randn(2, 8, 9)
    kernel = _randn(*shape, seed=3)
    out = apply_kernels(image, {"k": kernel})["k"]
    padding = (shape[0] // 2, shape[1] // 2)
    assert torch.allclose(out, F.conv2d(image[:, None], kernel[None, None], padding=padding)[:, 0])


# ---- learn_kernel ----------------------------------------------------------------------------------------

def test_learn_kernel_takes_one_step_and_rejects_zero() -> None:
    X, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X, Y, steps=1)
    assert kernel.shape == (1, 2) and len(losses) == 1
    with pytest.raises(UserError, match="steps must be at least 1, got 0"):
        learn_kernel(X, Y, steps=0)


def test_learn_kernel_default_seed_is_zero() -> None:
    X, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X, Y, steps=2)
    kernel0, losses0 = learn_kernel(X, Y, steps=2, seed=0)
    assert torch.equal(kernel, kernel0) and losses == losses0
    _, losses1 = learn_kernel(X, Y, steps=2, seed=1)
    assert losses1 != losses


def test_learn_kernel_works_in_float64() -> None:
    X, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X.double(), Y.double())
    assert kernel.dtype == torch.float64
    assert torch.allclose(kernel, torch.tensor([[1.0, -1.0]], dtype=torch.float64), atol=0.01)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": (2,)}, "^kernel_size must be an int or a pair"),
    ({"kernel_size": 2, "padding": (1,)}, "^padding must be an int or a pair"),
])
def test_pool2d_argument_errors_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        pool2d(torch.zeros(1, 4, 4), **kwargs)


def test_conv2d_rejects_a_five_axis_input() -> None:
    with pytest.raises(UserError, match="conv2d input must be"):
        conv2d(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 3, 3))


def test_conv2d_in_exactly_two_batch_chunks_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepnn.ops.conv as conv_module

    x, w = _randn(4, 2, 5, 5), _randn(3, 2, 3, 3, seed=1)
    per_example = 2 * 3 * 3 * 3 * 3 * x.element_size()  # c_i · k_h · k_w · m_h · m_w · bytes
    monkeypatch.setattr(conv_module, "COLS_BUDGET", 2 * per_example)  # two examples per chunk: two chunks
    torch.testing.assert_close(conv2d(x, w), F.conv2d(x, w))


@pytest.mark.parametrize("kwargs,message", [
    ({"size": 0, "kernel": 1}, "^size must be at least 1"),
    ({"size": (3,), "kernel": 1}, "^size must be an int or a pair"),
    ({"size": 5, "kernel": 1, "pad_total": -1}, "^pad_total must be at least 0"),
    ({"size": 5, "kernel": 1, "pad_total": (1,)}, "^pad_total must be an int or a pair"),
    ({"size": 5, "kernel": 1, "stride": 0}, "^stride must be at least 1"),
    ({"size": 5, "kernel": 1, "stride": (1,)}, "^stride must be an int or a pair"),
])
def test_conv_output_shape_errors_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        conv_output_shape(**kwargs)


def test_conv_output_shape_error_gives_the_padded_size_and_the_layer() -> None:
    with pytest.raises(UserError, match=r"kernel 5×7 is larger than the padded input 5×6 \(input 3×4"):
        conv_output_shape((3, 4), (5, 7), pad_total=2)
    with pytest.raises(UserError, match="padded input 1×1 at layer 2 "):
        conv_output_shape(3, 2, layers=2, stride=2)


@pytest.mark.parametrize("kernel,message", [((2,), "^kernel_size must be an int or a pair"),
                                            (0, "^kernel_size must be at least 1")])
def test_sliding_windows_kernel_errors_say_kernel_size(kernel, message: str) -> None:
    with pytest.raises(UserError, match=message):
        sliding_windows(torch.zeros(3, 3), kernel)


def test_sliding_windows_checks_the_kernel_against_the_padded_size() -> None:
    assert sliding_windows(torch.zeros(3, 3), (1, 5), padding=1).shape == (5, 1, 1, 5)
    with pytest.raises(UserError, match="larger than the padded input 5×5"):
        sliding_windows(torch.zeros(3, 3), (1, 6), padding=1)


@pytest.mark.parametrize("call,message", [
    (lambda: pool2d(torch.zeros(4, 4), 0), "^kernel_size must be at least 1 on both axes, got 0$"),
    (lambda: pool2d(torch.zeros(4, 4), 2, padding=-1), "^padding must be at least 0 on both axes, got -1$"),
    (lambda: sliding_windows(torch.zeros(4, 4), 1, stride=0), "^stride must be at least 1 on both axes, got 0$"),
])
def test_argument_errors_quote_the_value_as_given(call, message: str) -> None:
    with pytest.raises(UserError, match=message):
        call()
