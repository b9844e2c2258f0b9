"""Each model pinned to its paper (C11–C18, R7): structural fingerprints and hand-checked layouts.

Two layers of protection (fingerprints are explained in ``tests/fingerprint.py``):

1. every registered classification model, at its defaults (the paper's network), in the
   Fashion-MNIST setting and with its layout options, must match its reviewed snapshot in
   ``tests/fingerprints/`` line for line (layer types, hyper-parameters, functional calls in
   ``forward``, output shapes). An intended change: ``.venv/bin/python tests/fingerprint.py
   --update``, then review ``git diff tests/fingerprints`` against the paper;
2. the lecture's models are also written out here by hand from their papers, so a snapshot
   regenerated over a mistake still fails: LeNet's sigmoid and average pooling, AlexNet's
   overlapping max pooling and dropout, VGG's Table 1, NiN's mlpconv blocks, GoogLeNet's
   Table 1, ResNet's basic and bottleneck blocks and shortcuts, the highway layer.

Everything runs on the meta device (shapes, no arithmetic): a few seconds for the whole zoo.
"""

from __future__ import annotations

import difflib
from functools import cache

import pytest
from fingerprint import SNAPSHOTS, Case, Step, cases

import deepnn

CASES = {c.id: c for c in cases()}


@cache
def steps(case_id: str) -> tuple[Step, ...]:
    """The fingerprint steps of a case (traced once per test session)."""
    return tuple(CASES[case_id].steps())


def layers(case_id: str, prefix: str = "", skip: tuple[str, ...] = ("Identity",)) -> list[str]:
    """Descriptions of the steps under module path ``prefix``, without ``skip`` kinds."""
    return [
        s.what for s in steps(case_id)
        if (not prefix or s.path == prefix or s.path.startswith(prefix + ".")) and s.kind not in skip
    ]


def shapes(case_id: str, kind: str) -> list[str]:
    return [s.shape for s in steps(case_id) if s.kind == kind]


def conv(i: int, o: int, k: int | str, s: int = 1, p: int | str = 0, bias: bool = True) -> str:
    return f"Conv2d({i}→{o}, k={k}, s={s}, p={p}, d=1, g=1, {'bias' if bias else 'no bias'})"


def maxpool(k: int, s: int, p: int = 0) -> str:
    return f"MaxPool2d(k={k}, s={s}, p={p}, d=1, ceil=False)"


def avgpool(k: int, s: int, p: int = 0) -> str:
    return f"AvgPool2d(k={k}, s={s}, p={p}, ceil=False)"


def linear(i: int, o: int) -> str:
    return f"Linear({i}→{o}, bias)"


def bn(c: int) -> str:
    return f"BatchNorm2d({c}, eps=1e-05, momentum=0.1)"


RELU, SIGMOID, FLATTEN = "ReLU()", "Sigmoid()", "Flatten(start_dim=1, end_dim=-1)"
GAP = "AdaptiveAvgPool2d(out=1)"
LRN = "LocalResponseNorm(size=5, alpha=0.0005, beta=0.75, k=2)"  # Krizhevsky's α=1e-4 per channel, n=5


def dropout(p: float) -> str:
    return f"Dropout(p={p:g})"


# --------------------------------------------------------------------------- snapshots


def test_every_classification_model_has_a_snapshot() -> None:
    names = set(deepnn.list_models(task="classification"))
    assert names <= set(CASES), "every registered classification model is fingerprinted"
    files = {p.stem for p in SNAPSHOTS.glob("*.txt")}
    missing, stale = sorted(set(CASES) - files), sorted(files - set(CASES))
    assert not missing and not stale, (
        f"snapshots missing for {missing}, stale for {stale}: run `.venv/bin/python tests/fingerprint.py "
        "--update` and review the new files against the papers"
    )


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_fingerprint_matches_snapshot(case_id: str) -> None:
    case = CASES[case_id]
    if not case.snapshot.exists():
        pytest.fail(f"{case_id}: no snapshot {case.snapshot.name}; "
                    "run `.venv/bin/python tests/fingerprint.py --update`")
    want = case.snapshot.read_text()
    got = case.text(list(steps(case_id)))
    if got != want:
        diff = "".join(difflib.unified_diff(
            want.splitlines(keepends=True), got.splitlines(keepends=True),
            fromfile=f"snapshot {case_id}", tofile=f"model {case_id} now", n=2,
        ))
        pytest.fail(f"the architecture of {case_id} changed (if intended: `.venv/bin/python tests/fingerprint.py "
                    f"--update` and review against the paper):\n{diff}", pytrace=False)


def test_only_lenet_and_highway_use_sigmoid() -> None:
    """ReLU everywhere since AlexNet; the lecture's LeNet (C11) and the highway gate (R7) are the exceptions."""
    for case_id in CASES:
        acts = {s.kind for s in steps(case_id)} & {"ReLU", "Sigmoid", "Tanh", "F.relu", "F.sigmoid", "F.tanh",
                                                     "GELU", "SiLU", "ELU", "LeakyReLU", "F.gelu", "F.silu"}
        model = CASES[case_id].model
        expected = {"lenet": {"Sigmoid"}, "highway": {"ReLU", "F.sigmoid", "F.relu"}}.get(model, {"ReLU"})
        assert acts == expected, case_id


# --------------------------------------------------------------------------- LeNet (C11)


def test_lenet_is_the_lecture_lenet() -> None:
    """Two 5×5 convolutions with sigmoid, each followed by 2×2 stride-2 *average* pooling, then
    dense 120 → 84 → 10 with sigmoid (LeCun et al. 1998 as the lecture shows it); 28×28 inputs
    pad the first convolution by 2 to keep the paper's 28 → 14 → 10 → 5 maps."""
    assert layers("lenet") == [
        conv(1, 6, 5, p=2), SIGMOID, avgpool(2, 2),
        conv(6, 16, 5), SIGMOID, avgpool(2, 2),
        FLATTEN, linear(400, 120), SIGMOID, linear(120, 84), SIGMOID, linear(84, 10),
    ]
    assert [s.shape for s in steps("lenet") if s.kind != "Identity"] == [
        "6x28x28", "6x28x28", "6x14x14", "16x10x10", "16x10x10", "16x5x5",
        "400", "120", "120", "84", "84", "10",
    ]
    paper = Case("lenet-32", "lenet", {"input_size": 32}).steps()  # the paper's 32×32: no padding
    assert paper[0].what == conv(1, 6, 5) and paper[0].shape == "6x28x28"


def test_lenet_modern_swaps_in_relu_max_pooling_and_batch_norm() -> None:
    assert layers("lenet_modern") == [
        conv(1, 6, 5, p=2, bias=False), bn(6), RELU, maxpool(2, 2),
        conv(6, 16, 5, bias=False), bn(16), RELU, maxpool(2, 2),
        FLATTEN, "Linear(400→120, no bias)", "BatchNorm1d(120, eps=1e-05, momentum=0.1)", RELU,
        "Linear(120→84, no bias)", "BatchNorm1d(84, eps=1e-05, momentum=0.1)", RELU, linear(84, 10),
    ]


# --------------------------------------------------------------------------- AlexNet (C12)

ALEXNET_HEAD = [FLATTEN, linear(9216, 4096), RELU, dropout(0.5), linear(4096, 4096), RELU, dropout(0.5),
                linear(4096, 1000)]


@pytest.mark.parametrize("lrn", [False, True])
def test_alexnet_is_krizhevsky_2012(lrn: bool) -> None:
    """Five convolutions 96-256-384-384-256 (11×11/4, 5×5, 3×3), ReLU after every layer,
    overlapping 3×3 stride-2 max pooling after conv1, conv2 and conv5, dropout 0.5 after each
    of the two hidden dense layers; with ``lrn``, response normalisation after the ReLUs of
    conv1 and conv2, before their pools (§3.3–3.5)."""
    norm = [LRN] if lrn else []
    assert layers("alexnet-lrn" if lrn else "alexnet") == [
        conv(3, 96, 11, s=4, p=2), RELU, *norm, maxpool(3, 2),
        conv(96, 256, 5, p=2), RELU, *norm, maxpool(3, 2),
        conv(256, 384, 3, p=1), RELU, conv(384, 384, 3, p=1), RELU, conv(384, 256, 3, p=1), RELU, maxpool(3, 2),
        *ALEXNET_HEAD,
    ]
    assert shapes("alexnet", "MaxPool2d") == ["96x27x27", "256x13x13", "256x6x6"]


def test_alexnet_small_input_only_changes_the_stem() -> None:
    small = layers("alexnet-28")
    assert small[0] == conv(1, 96, 3, p=1)
    assert small[1:13] == layers("alexnet")[1:13]  # same convolutions and pools after the stem
    assert small[-7:] == [linear(1024, 4096), RELU, dropout(0.5), linear(4096, 4096), RELU, dropout(0.5),
                          linear(4096, 10)]


# --------------------------------------------------------------------------- VGG (C13)

# Simonyan & Zisserman 2014, Table 1: "64" a 3×3 conv with 64 channels, "1x256" a 1×1 conv, M a max pool.
TABLE1 = {
    "A": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "A-LRN": "64 LRN M 128 M 256 256 M 512 512 M 512 512 M",
    "B": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "C": "64 64 M 128 128 M 256 256 1x256 M 512 512 1x512 M 512 512 1x512 M",
    "D": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "E": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}
VGGS = {"vgg11": "A", "vgg11_lrn": "A-LRN", "vgg13": "B", "vgg16_c": "C", "vgg16": "D", "vgg19": "E",
        "vgg11_bn": "A", "vgg13_bn": "B", "vgg16_c_bn": "C", "vgg16_bn": "D", "vgg19_bn": "E"}


def vgg_layers(cfg: str, batch_norm: bool, in_channels: int = 3, pools: int = 5) -> list[str]:
    out, c = [], in_channels
    for entry in TABLE1[cfg].split():
        if entry == "M":
            if pools:
                out.append(maxpool(2, 2))
                pools -= 1
        elif entry == "LRN":
            out.append(LRN)
        else:
            k, o = (1, int(entry[2:])) if entry.startswith("1x") else (3, int(entry))
            out += [conv(c, o, k, p=k // 2), *([bn(o)] if batch_norm else []), RELU]
            c = o
    return out


@pytest.mark.parametrize("name", sorted(VGGS))
def test_vgg_is_table_1(name: str) -> None:
    """Blocks of 3×3 pad-1 stride-1 convolutions with ReLU (C's 1×1 convolutions), 2×2 stride-2
    max pooling, FC-4096, FC-4096 with dropout 0.5 after each, FC-1000; ``_bn``: batch norm
    between every convolution and its ReLU."""
    cfg, batch_norm = VGGS[name], name.endswith("_bn")
    head = [FLATTEN, linear(25088, 4096), RELU, dropout(0.5), linear(4096, 4096), RELU, dropout(0.5),
            linear(4096, 1000)]
    assert layers(name) == vgg_layers(cfg, batch_norm) + head
    assert shapes(name, "MaxPool2d") == ["64x112x112", "128x56x56", "256x28x28", "512x14x14", "512x7x7"]
    # 28×28: the fifth pool would leave less than 1×1 and is dropped (28 → 14 → 7 → 3 → 1).
    small = [FLATTEN, linear(512, 4096), RELU, dropout(0.5), linear(4096, 4096), RELU, dropout(0.5),
             linear(4096, 10)]
    assert layers(f"{name}-28") == vgg_layers(cfg, batch_norm, in_channels=1, pools=4) + small


# --------------------------------------------------------------------------- NiN (C15)


def nin_block(i: int, o: int, k: int, s: int, p: int) -> list[str]:
    return [conv(i, o, k, s=s, p=p), RELU, conv(o, o, 1), RELU, conv(o, o, 1), RELU]


def test_nin_is_mlpconv_blocks_and_global_average_pooling() -> None:
    """Lin et al. 2013 as the lecture (d2l) lays it out: conv (11/4, 5/1 pad 2, 3/1 pad 1) + two
    1×1 convolutions, each with ReLU; 3×3 stride-2 max pools; dropout 0.5; a last block with one
    channel per class; global average pooling; no dense layer at all."""
    assert layers("nin") == [
        *nin_block(3, 96, 11, 4, 0), maxpool(3, 2),
        *nin_block(96, 256, 5, 1, 2), maxpool(3, 2),
        *nin_block(256, 384, 3, 1, 1), maxpool(3, 2),
        dropout(0.5),
        *nin_block(384, 1000, 3, 1, 1),
        GAP, FLATTEN,
    ]
    assert not any(s.kind == "Linear" for s in steps("nin-28"))


# --------------------------------------------------------------------------- GoogLeNet (C16)

# Szegedy et al. 2014, Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj, output (C, H).
GOOGLENET_TABLE1 = {
    "3a": (64, 96, 128, 16, 32, 32, 256, 28), "3b": (128, 128, 192, 32, 96, 64, 480, 28),
    "4a": (192, 96, 208, 16, 48, 64, 512, 14), "4b": (160, 112, 224, 24, 64, 64, 512, 14),
    "4c": (128, 128, 256, 24, 64, 64, 512, 14), "4d": (112, 144, 288, 32, 64, 64, 528, 14),
    "4e": (256, 160, 320, 32, 128, 128, 832, 14),
    "5a": (256, 160, 320, 32, 128, 128, 832, 7), "5b": (384, 192, 384, 48, 128, 128, 1024, 7),
}


def test_googlenet_is_table_1() -> None:
    """Four paths per Inception block: 1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max pool → 1×1, each conv
    with ReLU, concatenated on channels (3a: 192 → 64 + 128 + 32 + 32 = 256 at 28×28)."""
    in_channels = 192
    for name, (c1, r3, c3, r5, c5, proj, out, hw) in GOOGLENET_TABLE1.items():
        block = f"features.inception{name}"
        assert layers("googlenet", block) == [
            conv(in_channels, c1, 1), RELU,
            conv(in_channels, r3, 1), RELU, conv(r3, c3, 3, p=1), RELU,
            conv(in_channels, r5, 1), RELU, conv(r5, c5, 5, p=2), RELU,
            maxpool(3, 1, 1), conv(in_channels, proj, 1), RELU,
            "F.cat([T, T, T, T], dim=1)",
        ], name
        assert [s.shape for s in steps("googlenet") if s.path == block] == [f"{out}x{hw}x{hw}"], name
        in_channels = out
    stem = [s.what for s in steps("googlenet") if s.path.startswith("features.stage")]
    assert stem == [conv(3, 64, 7, s=2, p=3), RELU, maxpool(3, 2, 1), LRN,
                    conv(64, 64, 1), RELU, conv(64, 192, 3, p=1), RELU, LRN, maxpool(3, 2, 1)]
    assert [s.what for s in steps("googlenet") if s.path.startswith("features.pool")] == [maxpool(3, 2, 1)] * 2
    assert layers("googlenet", "head") == [GAP, FLATTEN, dropout(0.4), linear(1024, 1000)]


def test_googlenet_auxiliary_classifiers_follow_4a_and_4d() -> None:
    """Paper §5: 5×5/3 average pool (here adaptive to its 4×4 output), 1×1 conv 128 + ReLU, dense
    1024 + ReLU, dropout 0.7, dense classes; run in training mode right after 4a and 4d."""
    seq = [s.path for s in steps("googlenet-aux")]
    for block, channels in (("4a", 512), ("4d", 528)):
        first = seq.index(f"aux.inception{block}.0")
        assert seq[first - 1] == f"features.inception{block}"  # right after the block's concatenation
        assert layers("googlenet-aux", f"aux.inception{block}") == [
            "AdaptiveAvgPool2d(out=4)", conv(channels, 128, 1), RELU, FLATTEN,
            linear(2048, 1024), RELU, dropout(0.7), linear(1024, 1000),
        ]


# --------------------------------------------------------------------------- Inception family (C17)


def test_inception_family_factorisations() -> None:
    """v2 (BN): no 5×5 kernels (two 3×3), batch norm then ReLU after every convolution; v3: 1×7,
    7×1, 1×3, 3×1 kernels; Inception-ResNet-v2: scaled residual sums (0.17, 0.1, 0.2)."""
    for case_id in ("inception_bn", "inception_v3", "inception_v4", "inception_resnet_v2"):
        kernels = {s.what.split("k=")[1].split(",")[0] for s in steps(case_id) if s.kind == "Conv2d"}
        if case_id == "inception_bn":
            assert kernels == {"7", "3", "1"}
        elif case_id != "inception_resnet_v2":
            assert {"1x7", "7x1", "1x3", "3x1"} <= kernels, case_id
    seq = [s for s in steps("inception_bn") if s.kind != "Identity"]
    for i, s in enumerate(seq):
        if s.kind == "Conv2d":
            assert (seq[i + 1].kind, seq[i + 2].kind) == ("BatchNorm2d", "ReLU"), s.path
    scales = [s.what for s in steps("inception_resnet_v2") if s.kind == "F.mul"]
    assert scales == ["F.mul(T, 0.17)"] * 10 + ["F.mul(T, 0.1)"] * 20 + ["F.mul(T, 0.2)"] * 9 + ["F.mul(T, 1)"]


# --------------------------------------------------------------------------- ResNet (C18)

RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
           "resnet152": ("bottleneck", (3, 8, 36, 3))}


def residual_block(kind: str, i: int, w: int, stride: int) -> list[str]:
    """He et al. 2015: basic = 3×3 conv-BN-ReLU, 3×3 conv-BN; bottleneck = 1×1, 3×3 (stride, as
    torchvision's v1.5), 1×1 to 4w; a 1×1 conv-BN projection where the shape changes (option B),
    else the identity; then add and ReLU."""
    o = w if kind == "basic" else 4 * w
    if kind == "basic":
        body = [conv(i, w, 3, s=stride, p=1, bias=False), bn(w), RELU, conv(w, w, 3, p=1, bias=False), bn(w)]
    else:
        body = [conv(i, w, 1, bias=False), bn(w), RELU, conv(w, w, 3, s=stride, p=1, bias=False), bn(w), RELU,
                conv(w, o, 1, bias=False), bn(o)]
    shortcut = ["Identity()"] if stride == 1 and i == o else [conv(i, o, 1, s=stride, bias=False), bn(o)]
    return body + shortcut + ["F.add(T, T)", RELU]


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_resnet_blocks_and_shortcuts(name: str) -> None:
    kind, depths = RESNETS[name]
    expected = [conv(3, 64, 7, s=2, p=3, bias=False), bn(64), RELU, maxpool(3, 2, 1)]
    channels = 64
    for stage, (w, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        for j in range(depth):
            expected += residual_block(kind, channels, w, 2 if stage > 0 and j == 0 else 1)
            channels = w if kind == "basic" else 4 * w
    expected += [GAP, FLATTEN, linear(channels, 1000)]
    assert layers(name, skip=()) == expected
    assert [s.shape for s in steps(name) if s.kind == "F.add"][-1] == f"{channels}x7x7"


# --------------------------------------------------------------------------- highway (R7)


def test_highway_layers_gate_between_transform_and_carry() -> None:
    """y = g ⊙ H(x) + (1 − g) ⊙ x with g = σ(W_T x + b_T) and H = ReLU(W_H x + b_H); Srivastava et
    al.'s MNIST net: a plain 784 → 50 layer, nine highway layers of 50 units, 50 → 10."""
    layer = [linear(50, 50), "F.sigmoid(T)", linear(50, 50), "F.relu(T)",
             "F.mul(T, T)", "F.rsub(T, 1)", "F.mul(T, T)", "F.add(T, T)"]
    assert layers("highway") == [FLATTEN, linear(784, 50), RELU, *layer * 9, linear(50, 10)]
    gates = [s.path for s in steps("highway") if s.kind == "F.sigmoid"]
    assert [s.path for s in steps("highway") if s.path.endswith(".gate")] == [f"{g}.gate" for g in gates]
