"""The CNN primitives of ``deepnn.ops`` (lecture items C1–C10): every worked example of the
slides reproduced exactly, and each function checked against its ``torch.nn.functional``
twin, values and gradients, over a grid of shapes, paddings, strides and channel counts."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from deepnn.errors import UserError
from deepnn.ops import (
    EDGE_KERNEL,
    IMAGE_KERNELS,
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

X = torch.arange(9.0).reshape(3, 3)  # the slides' input [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
K = torch.arange(4.0).reshape(2, 2)  # the slides' kernel [[0, 1], [2, 3]]
X7 = torch.stack([X, X + 1])  # C7: two input channels
K7 = torch.stack([K, K + 1])


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---- the slides' worked examples, exactly ---------------------------------------------------------------

def test_c1_cross_correlation() -> None:
    assert torch.equal(corr2d(X, K), t([[19, 25], [37, 43]]))
    assert torch.equal(conv2d(X, K), t([[19, 25], [37, 43]]))


def test_c5_padding() -> None:
    expected = t([[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]])
    assert torch.equal(conv2d(X, K, padding=1), expected)
    assert torch.equal(corr2d(F.pad(X, (1, 1, 1, 1)), K), expected)


def test_c6_stride_per_axis() -> None:
    assert torch.equal(conv2d(X, K, padding=1, stride=(3, 2)), t([[0, 8], [6, 8]]))


def test_c7_multiple_input_channels() -> None:
    assert torch.equal(conv2d(X7, K7), t([[56, 72], [104, 120]]))
    assert torch.equal(conv2d(X7, K7), corr2d(X7[0], K7[0]) + corr2d(X7[1], K7[1]))  # the slide's sum


def test_c8_multiple_output_channels() -> None:
    W = torch.stack([K7, K7 + 1, K7 + 2])  # (c_o=3, c_i=2, 2, 2)
    Y = conv2d(X7, W)
    assert Y.shape == (3, 2, 2)
    assert torch.equal(Y, t([[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]]))
    for o in range(3):  # one 3-D kernel per output channel
        assert torch.equal(Y[o], conv2d(X7, W[o]))


def test_c4_shape_shrinks() -> None:
    assert conv_output_shape((32, 32), kernel=5) == (28, 28)
    assert conv_output_shape((32, 32), kernel=5, layers=7) == (4, 4)
    x = torch.zeros(1, 1, 32, 32)
    for _ in range(7):
        x = conv2d(x, torch.ones(1, 1, 5, 5))
    assert x.shape == (1, 1, 4, 4)
    with pytest.raises(UserError, match="larger than the padded input 4×4 at layer 8"):
        conv_output_shape((32, 32), kernel=5, layers=8)


def test_c5_c6_formulas_use_total_padding() -> None:
    assert conv_output_shape((3, 3), (2, 2), pad_total=2) == (4, 4)  # (n − k + p + 1), p = 1 + 1
    assert conv_output_shape((3, 3), (2, 2), pad_total=2, stride=(3, 2)) == (2, 2)  # ⌊(3 − 2 + 2 + 3)/3⌋ = 2


def test_c10_pooling_examples() -> None:
    assert torch.equal(pool2d(X, 2, stride=1), t([[4, 5], [7, 8]]))
    assert torch.equal(pool2d(X, 2, stride=1, mode="avg"), t([[2, 3], [5, 6]]))


def test_c10_pooling_keeps_channels() -> None:
    x = torch.stack([X, X + 1])  # (2, 3, 3): pooled separately, #out channels = #in channels
    assert torch.equal(pool2d(x, 2, stride=1), t([[[4, 5], [7, 8]], [[5, 6], [8, 9]]]))


def test_c10_edge_example_and_shift_tolerance() -> None:
    X_edge, Y = vertical_edge_example()
    assert torch.equal(X_edge, t([[1, 1, 0, 0, 0]] * 4))
    assert torch.equal(Y, t([[0, 1, 0, 0]] * 4))
    assert torch.equal(Y, conv2d(X_edge, EDGE_KERNEL))
    _, Y_shifted = vertical_edge_example(shift=1)
    assert torch.equal(Y_shifted, t([[0, 0, 1, 0]] * 4))  # convolution moves with the edge: no overlap
    assert (Y * Y_shifted).sum() == 0
    pooled, pooled_shifted = pool2d(Y, 2, stride=1), pool2d(Y_shifted, 2, stride=1)
    assert torch.equal(pooled, t([[1, 1, 0]] * 3))
    assert torch.equal(pooled_shifted, t([[0, 1, 1]] * 3))
    assert torch.equal(pooled[:, 1], pooled_shifted[:, 1])  # 2×2 max pooling still fires at column 1
    assert pooled[:, 1].eq(1).all()


def test_c2_learn_edge_kernel() -> None:
    X_edge, Y = vertical_edge_example()
    kernel, losses = learn_kernel(X_edge, Y, (1, 2))
    assert kernel.shape == (1, 2)
    assert torch.allclose(kernel, EDGE_KERNEL, atol=0.01)
    assert len(losses) == 20
    assert losses[-1] < 1e-4 < losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))


def test_c2_learn_kernel_checks_target_shape() -> None:
    X_edge, Y = vertical_edge_example()
    with pytest.raises(UserError, match="Y has shape"):
        learn_kernel(X_edge, Y[:, :3], (1, 2))


def test_c3_kernels_are_slide_values_over_9() -> None:
    assert list(IMAGE_KERNELS) == ["identity", "edge", "blur", "sharpen", "lighten", "darken",
                                   "random 1", "random 2"]
    assert torch.equal(IMAGE_KERNELS["edge"] * 9, t([[0, 9, 0], [9, -36, 9], [0, 9, 0]]))
    assert torch.equal(IMAGE_KERNELS["random 1"] * 9, t([[-2, 2, 18], [-3, 0, 2], [-3, -3, -2]]))
    assert torch.equal(IMAGE_KERNELS["random 2"] * 9, t([[9, 6, 0], [6, 0, -6], [0, -6, -1]]))
    assert IMAGE_KERNELS["sharpen"].sum().item() == pytest.approx(1.0)  # sharpening keeps mean brightness


def test_c3_apply_kernels_matches_torch_and_keeps_size() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 7, 9, dtype=torch.float64)  # RGB
    out = apply_kernels(image)
    assert list(out) == list(IMAGE_KERNELS)
    for name, kernel in IMAGE_KERNELS.items():
        weight = kernel.double().expand(3, 1, 3, 3)
        assert torch.allclose(out[name], F.conv2d(image[None], weight, padding=1, groups=3)[0]), name
    assert torch.allclose(out["identity"], image)
    assert torch.allclose(out["lighten"], image * 12 / 9)
    assert torch.allclose(out["darken"], image * 6 / 9)
    assert torch.allclose(out["blur"][:, 1:-1, 1:-1], F.avg_pool2d(image, 3, stride=1))
    assert apply_kernels(image[0])["edge"].shape == (7, 9)  # greyscale (H, W)


# ---- oracles: torch.nn.functional, values and gradients -------------------------------------------------

def _conv_cases(n: int = 40) -> list[tuple]:
    """Random (B, c_i, c_o, H, W, kernel, stride, padding, bias) over a fixed seed: fast and reproducible."""
    rng = random.Random(3)
    cases = []
    while len(cases) < n:
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        ph, pw = rng.randint(0, 2), rng.randint(0, 2)
        H, W = rng.randint(1, 9), rng.randint(1, 9)
        if kh > H + 2 * ph or kw > W + 2 * pw:
            continue
        stride = rng.choice([1, 2, 3, (1, 2), (3, 1)])
        padding = rng.choice([(ph, pw), ph])
        if isinstance(padding, int) and (kw > W + 2 * padding):
            continue
        B, ci, co = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 5)
        cases.append((B, ci, co, H, W, (kh, kw), stride, padding, rng.random() < 0.5))
    return cases


@pytest.mark.parametrize("B,ci,co,H,W,kernel,stride,padding,use_bias", _conv_cases())
def test_conv2d_matches_torch(B, ci, co, H, W, kernel, stride, padding, use_bias) -> None:
    g = torch.Generator().manual_seed(B * 1000 + H * 10 + W)
    x = torch.randn(B, ci, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(co, ci, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, generator=g, dtype=torch.float64, requires_grad=True) if use_bias else None
    ours, theirs = conv2d(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs)
    upstream = torch.randn(theirs.shape, generator=g, dtype=torch.float64)
    inputs = (x, w) + ((b,) if use_bias else ())
    ours_grads = torch.autograd.grad(ours, inputs, upstream)
    theirs_grads = torch.autograd.grad(theirs, inputs, upstream)
    for name, a, e in zip("xwb", ours_grads, theirs_grads, strict=False):
        assert torch.allclose(a, e), f"gradient of {name}"


def test_conv2d_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: conv2d(*a, stride=(2, 1), padding=(1, 0)), (x, w, b))


def test_conv2d_unbatched_forms_match_batched() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    assert torch.allclose(conv2d(x, w, b, padding=1), F.conv2d(x[None], w, b, padding=1)[0])
    assert torch.allclose(conv2d(x, w[0]), F.conv2d(x[None], w[:1])[0, 0])  # (c_i, k_h, k_w) kernel
    assert torch.allclose(conv2d(x[0], w[0, 0]), corr2d(x[0], w[0, 0]))  # (H, W) and (k_h, k_w)
    assert torch.allclose(conv2d(x[0], w[:, :1]), F.conv2d(x[None, :1], w[:, :1])[0])  # (H, W), c_o kernels


@pytest.mark.parametrize("H,W,kernel,stride,padding", [
    (28, 28, 2, None, 0), (7, 9, 3, 2, 1), (6, 5, (3, 2), (1, 2), (1, 0)), (5, 5, 5, 1, 2),
    (4, 7, (2, 3), 3, (1, 1)), (9, 9, 3, 1, 1), (1, 1, 1, None, 0), (8, 6, (4, 2), (2, 1), (2, 1)),
])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2d_matches_torch(H, W, kernel, stride, padding, mode) -> None:
    g = torch.Generator().manual_seed(H * 100 + W)
    x = torch.randn(2, 3, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    torch_pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    ours, theirs = pool2d(x, kernel, stride, padding, mode), torch_pool(x, kernel, stride, padding)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs)
    upstream = torch.randn(theirs.shape, generator=g, dtype=torch.float64)
    (ours_grad,), (theirs_grad,) = (torch.autograd.grad(y, x, upstream) for y in (ours, theirs))
    assert torch.allclose(ours_grad, theirs_grad)


def test_max_pool_ties_route_gradient_like_torch() -> None:
    x = torch.randint(0, 3, (2, 2, 6, 6)).double().requires_grad_()  # many equal maxima
    for stride, padding in [(1, 0), (2, 1), (1, 1)]:
        ours, theirs = pool2d(x, 3, stride, padding), F.max_pool2d(x, 3, stride, padding)
        assert torch.equal(ours, theirs)
        (g_ours,), (g_theirs,) = (torch.autograd.grad(y.sum(), x) for y in (ours, theirs))
        assert torch.equal(g_ours, g_theirs)


def test_pool2d_stride_defaults_to_window() -> None:
    x = torch.arange(16.0).reshape(4, 4)
    assert torch.equal(pool2d(x, 2), t([[5, 7], [13, 15]]))
    assert torch.equal(pool2d(x, 2, mode="avg"), t([[2.5, 4.5], [10.5, 12.5]]))


def test_c9_1x1_conv_is_dense_layer_per_pixel() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    dense = torch.nn.Linear(3, 6).double()  # c_o × c_i weight
    ours = conv1x1(x, dense.weight, dense.bias)
    assert ours.shape == (2, 6, 4, 5)
    assert torch.allclose(ours, conv2d(x, dense.weight[:, :, None, None], dense.bias))
    assert torch.allclose(ours, F.conv2d(x, dense.weight[:, :, None, None], dense.bias))
    for i, j in itertools.product(range(4), range(5)):  # the same dense layer at every pixel
        assert torch.allclose(ours[:, :, i, j], dense(x[:, :, i, j]))


@pytest.mark.parametrize("H,W,k,p,s", [
    (32, 32, 5, 0, 1), (28, 28, 5, 2, 1), (7, 9, 3, 1, 2), (10, 5, (4, 2), (0, 1), (3, 2)),
    (3, 3, 2, 1, (3, 2)), (224, 224, 11, 2, 4), (56, 56, 3, 1, 2), (6, 6, 1, 0, 5),
])
def test_conv_output_shape_agrees_with_both_implementations(H, W, k, p, s) -> None:
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (p, p) if isinstance(p, int) else p
    expected = conv_output_shape((H, W), k, pad_total=(2 * ph, 2 * pw), stride=s)
    x, w = torch.zeros(1, 1, H, W), torch.zeros(1, 1, kh, kw)
    assert conv2d(x, w, stride=s, padding=p).shape[-2:] == expected
    assert F.conv2d(x, w, stride=s, padding=p).shape[-2:] == expected
    assert sliding_windows(x, k, s, p).shape[-4:] == (*expected, kh, kw)
    if 2 * ph <= kh and 2 * pw <= kw:  # pooling's padding limit
        assert pool2d(x, k, s, p, "avg").shape[-2:] == expected == F.avg_pool2d(x, k, s, p).shape[-2:]


# ---- bad arguments --------------------------------------------------------------------------------------

X1 = torch.zeros(1, 1, 3, 3)  # (B, c_i, H, W)


@pytest.mark.parametrize("call,message", [
    (lambda: conv2d(X1, torch.zeros(1, 1, 5, 5)), "larger than the padded input 3×3"),
    (lambda: conv2d(X1, torch.zeros(1, 1, 5, 5), padding=(2, 0)), "padded input 7×3"),
    (lambda: conv2d(X1, K[None, None], stride=0), "stride must be at least 1"),
    (lambda: conv2d(X1, K[None, None], stride=(1, -1)), "stride must be at least 1"),
    (lambda: conv2d(X1, K[None, None], padding=-1), "padding must be at least 0"),
    (lambda: conv2d(X1, K[None, None], stride=1.5), "stride must be an int"),
    (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(6, 1, 3, 3)),
     r"input has 3 channels \(shape \(1, 3, 5, 5\)\) but the kernel expects 1"),
    (lambda: conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(6, 1, 3, 3), torch.zeros(5)), "bias has 5 entries"),
    (lambda: conv2d(torch.zeros(5), torch.zeros(1, 1, 1, 1)), "conv2d input must be"),
    (lambda: conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 1, 1, 1)), "conv2d weight must be"),
    (lambda: corr2d(torch.zeros(1, 3, 3), K), "2-D input and a 2-D kernel"),
    (lambda: corr2d(torch.zeros(1, 3), K), "larger than the padded input 1×3"),
    (lambda: pool2d(X, 2, mode="median"), "unknown pooling mode 'median'"),
    (lambda: pool2d(X, 2, padding=2), "more than half the 2×2 window"),
    (lambda: pool2d(X, 4), "larger than the padded input 3×3"),
    (lambda: pool2d(torch.zeros(3), 1), r"shape \(..., H, W\)"),
    (lambda: conv_output_shape(32, 5, layers=0), "layers must be a positive int"),
    (lambda: conv_output_shape(32, 0), "kernel must be at least 1"),
    (lambda: conv_output_shape(32, (5, 5, 5)), "kernel must be an int or a pair"),
    (lambda: conv1x1(torch.zeros(1, 3, 4, 4), torch.zeros(2, 4)), "conv1x1 takes"),
    (lambda: vertical_edge_example(shift=3), "shift must be 0, 1 or 2"),
    (lambda: apply_kernels(torch.zeros(4, 4, dtype=torch.uint8)), "expected a float image"),
    (lambda: apply_kernels(torch.zeros(4, 4), {"even": torch.ones(2, 2)}), "odd sides"),
])
def test_bad_arguments_raise_clear_errors(call, message) -> None:
    with pytest.raises(UserError, match=message) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_conv2d_in_batch_chunks_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large batches run in chunks (COLS_BUDGET); values and gradients must not change."""
    import deepnn.ops.conv as conv_module

    monkeypatch.setattr(conv_module, "COLS_BUDGET", 1)  # one example per chunk
    torch.manual_seed(0)
    x = torch.randn(5, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ours = conv2d(x, w, b, stride=(2, 1), padding=1)
    grads = torch.autograd.grad(ours.square().sum(), (x, w, b))
    ref = F.conv2d(x, w, b, stride=(2, 1), padding=1)
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w, b))
    torch.testing.assert_close(ours, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
