"""deepnn.analysis: per-layer summary (C12, C14, C16) checked against PyTorch, and the C19 chart."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import deepnn
from deepnn.analysis.chart import bubble_chart, find_results, label_shifts, load_results
from deepnn.analysis.summary import inception_comparison, parse_shape, si, summarize_model, summary
from deepnn.models import count_parameters

# registered models checked at their 28×28 Fashion-MNIST size (a real forward on the CPU)
SMALL = ["lenet", "lenet_modern", "alexnet", "vgg11"]


def _fields(s):
    return [r.field[0][0] if r.field else None for r in s.rows]


@pytest.mark.parametrize("name", SMALL)
def test_totals_and_shapes_match_pytorch(name: str) -> None:
    """Rows add up to FlopCounterMode's total and count_parameters; shapes are the real forward's."""
    model = deepnn.create_model(name, num_classes=10, in_channels=1, input_size=28).eval()
    shapes = []
    handles = [
        m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
        for m in model.modules()
        if next(m.children(), None) is None
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.randn(1, 1, 28, 28))
    for h in handles:
        h.remove()
    s = summary(model, (1, 28, 28))
    assert s.flops == counter.get_total_flops() == sum(r.flops for r in s.rows)
    assert s.macs * 2 == s.flops
    assert s.params == count_parameters(model) == sum(r.params for r in s.rows)
    assert [r.output_shape for r in s.rows if r.type != "—"] == shapes
    assert s.output_shape == tuple(out.shape[1:]) == (10,)
    assert s.memory == sum(4 * torch.Size(r.output_shape).numel() for r in s.rows if r.output_shape)


def test_meta_device_matches_cpu() -> None:
    cpu = summary(deepnn.create_model("lenet"), (1, 28, 28))
    meta = summarize_model("lenet")
    assert cpu.rows == meta.rows and cpu.flops == meta.flops


def test_lenet_rows() -> None:
    """LeNet (C11) at 28×28: conv 5×5 pad 2 → 6×28×28, RF 5; pool → RF 6, jump 2; conv → 14; pool → 16, 4."""
    s = summarize_model("lenet")
    conv1, conv2 = (r for r in s.rows if r.kind == "conv")
    assert (conv1.params, conv1.macs, conv1.output_shape) == (156, 28 * 28 * 6 * 25, (6, 28, 28))
    assert (conv2.params, conv2.macs, conv2.output_shape) == (2416, 10 * 10 * 16 * 6 * 25, (16, 10, 10))
    trunk = [r.field for r in s.rows if r.kind in ("conv", "pool")]  # ((size, jump) down, across)
    assert trunk == [((5, 1), (5, 1)), ((6, 2), (6, 2)), ((14, 2), (14, 2)), ((16, 4), (16, 4))]
    flatten = next(i for i, r in enumerate(s.rows) if r.type == "Flatten")
    assert all(r.field is None for r in s.rows[flatten:])
    assert (s.params, s.macs) == (61_706, 416_520)


def test_receptive_field_of_stacks() -> None:
    two_3x3 = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Conv2d(1, 1, 3))
    assert _fields(summary(two_3x3, (1, 9, 9))) == [3, 3, 5]
    strided = nn.Sequential(
        nn.Conv2d(1, 1, 3, stride=2),
        nn.Conv2d(1, 1, 3, dilation=2),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    s = summary(strided, (1, 33, 33))
    assert _fields(s) == [3, 3 + 2 * 2 * 2, 11 + 1 * 2, None, None]  # r + d·(k-1)·j
    assert [r.field[0][1] for r in s.rows[:3]] == [2, 2, 4]  # jumps
    asym = summary(
        nn.Sequential(nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1), padding=(3, 0))),
        (1, 8, 8),
    )
    assert [r.field for r in asym.rows] == [((1, 1), (7, 1)), ((7, 1), (7, 1))]


class _Residual(nn.Module):
    """x + conv3(conv3(x)): the sum sees what the deeper path sees (RF 5), not the shortcut's 1."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1))
        self.after = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(x + self.body(x))


def test_receptive_field_through_branches() -> None:
    s = summary(_Residual(), (2, 8, 8))
    assert _fields(s) == [3, 5, 5]
    block = inception_comparison()[0]
    assert max(r.field[0][0] for r in block.rows if r.field) == 5  # the 5×5 path of the Inception block


def test_functional_flops_go_to_an_extra_row() -> None:
    class Gram(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 4) -> (B, 3, 3)
            h = self.proj(x)
            return self.scale * h @ h.transpose(1, 2)

    s = summary(Gram(), (3, 4))
    assert [r.name for r in s.rows] == ["proj", "(outside leaf modules)"]
    assert s.rows[1].params == 1 and s.rows[1].flops == 2 * 3 * 4 * 3
    assert s.flops == 2 * 3 * 4 * 4 + 2 * 3 * 4 * 3


def test_inception_table_c16() -> None:
    """Lecture C16: Inception 0.16M / 128M, 3×3 conv 0.44M / 346M, 5×5 conv 1.22M / 963M (MACs)."""
    block, conv3, conv5 = inception_comparison((192, 28, 28), 256)
    assert block.output_shape == conv3.output_shape == conv5.output_shape == (256, 28, 28)
    hw = 28 * 28
    weights = 192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16 + 16 * 25 * 32 + 192 * 32
    assert weights == 163_328
    assert block.params == weights + 64 + 96 + 128 + 16 + 32 + 32 == 163_696
    assert block.macs == hw * weights == 128_049_152
    assert (conv3.params, conv3.macs) == (192 * 256 * 9 + 256, hw * 192 * 256 * 9) == (442_624, 346_816_512)
    assert (
        (conv5.params, conv5.macs) == (192 * 256 * 25 + 256, hw * 192 * 256 * 25) == (1_229_056, 963_379_200)
    )
    # the slide's digits (it truncates: 346.8M → "346M", 1.2288M → "1.22M")
    assert [int(s.params / 1e4) / 100 for s in (block, conv3, conv5)] == [0.16, 0.44, 1.22]
    assert [s.macs // 10**6 for s in (block, conv3, conv5)] == [128, 346, 963]
    with pytest.raises(deepnn.UserError, match="multiple of 8"):
        inception_comparison((192, 28, 28), 100)


def test_last_layer_c14_lenet() -> None:
    last = summarize_model("lenet").last_layer
    assert (last.channels, last.height, last.width, last.outputs) == (16, 5, 5, 120)
    assert last.weights == 48_000
    assert "16 × 5 × 5 × 120 = 48,000 weights" in str(last)


def test_last_layer_c14_vgg16() -> None:
    s = summarize_model("vgg16")
    assert s.last_layer.weights == 512 * 7 * 7 * 4096 == 102_760_448
    assert s.params == 138_357_544


def test_no_dense_layer_no_curse() -> None:
    assert (
        summary(
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), (1, 5, 5)
        ).last_layer
        is None
    )


def test_summarize_model_inputs() -> None:
    assert summarize_model("lenet", (1, 32, 32)).rows[0].output_shape == (
        6,
        28,
        28,
    )  # the paper's 32×32, no pad
    assert summarize_model("lenet", (3, 28, 28)).rows[0].params == 3 * 6 * 25 + 6
    assert summarize_model("lenet", num_classes=5).output_shape == (5,)
    with pytest.raises(deepnn.UserError, match="square"):
        summarize_model("lenet", (1, 28, 32))
    with pytest.raises(deepnn.UserError, match="28×28 or 32×32"):
        summarize_model("lenet", (1, 64, 64))


@pytest.mark.parametrize("text", ["3x224", "3x0x4", "axbxc", "3x224x224x1", ""])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(deepnn.UserError, match="bad --input"):
        parse_shape(text)


def test_parse_shape_and_si() -> None:
    assert parse_shape("3x224x224") == parse_shape("3×224×224") == (3, 224, 224)
    assert [si(v) for v in (0, 840, 48_000, 117_600, 999_999, 1_228_800, 1.003e9)] == [
        "0",
        "840",
        "48.0K",
        "118K",
        "1.00M",
        "1.23M",
        "1.00G",
    ]


def _write(path, **fields):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return path


def test_chart_from_results(tmp_path) -> None:
    a1 = _write(
        tmp_path / "a1" / "results.json", model="lenet", test_accuracy=0.80, params=61706, flops=833040
    )
    a2 = _write(
        tmp_path / "a2" / "results.json", model="lenet", test_accuracy=0.90, params=61706, flops=833040
    )
    b = _write(
        tmp_path / "b" / "results.json", model="big", test_accuracy=0.92, params=10**7, flops=10**9, x=1
    )
    points = load_results(find_results([a1, a2.parent, b]))
    assert [(p.model, len(p.accuracies)) for p in points] == [("big", 1), ("lenet", 2)]
    assert points[1].accuracy == pytest.approx(0.85)
    out = bubble_chart(points, tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert find_results([tmp_path]) == [a1, a2, b]  # a folder of run folders


def test_chart_labels_do_not_overlap() -> None:
    anchors = [(100.0, 200.0), (110.0, 195.0), (105.0, 190.0), (400.0, 200.0)]  # three crowded, one apart
    shifts = label_shifts(anchors, (50.0, 20.0))
    assert shifts[0] == 0 and shifts[3] == 0  # the highest of the crowd and the lone one stay
    ys = sorted(y + s for (_, y), s in zip(anchors[:3], shifts[:3]))
    assert all(b - a >= 20 for a, b in zip(ys, ys[1:]))


def test_find_results_in_an_empty_folder(tmp_path) -> None:
    with pytest.raises(deepnn.UserError, match="no results file at or below"):
        find_results([tmp_path])


def test_chart_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_results([]) == []
    with pytest.raises(deepnn.UserError, match="train a model first"):
        bubble_chart([], tmp_path / "c.png")
    with pytest.raises(deepnn.UserError, match="no results file"):
        find_results(["nope.json"])
    bad = _write(tmp_path / "r.json", model="lenet", test_accuracy=0.9)
    with pytest.raises(deepnn.UserError, match="lacks params, flops"):
        load_results([bad])
    pct = _write(tmp_path / "p.json", model="lenet", test_accuracy=91.0, params=1, flops=1)
    with pytest.raises(deepnn.UserError, match="fraction"):
        load_results([pct])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(deepnn.UserError, match="as JSON"):
        load_results([tmp_path / "broken.json"])


def test_alexnet_vs_lenet_c12() -> None:
    """The slide's AlexNet column is the 54×54 → 26×26 → 12×12 → 5×5 geometry, ours at 220×220."""
    slide = summarize_model("alexnet", (3, 220, 220))
    layers = [r for r in slide.rows if r.kind in ("conv", "dense")]
    assert [r.output_shape[-1] for r in layers[:5]] == [54, 26, 12, 12, 12]
    assert [r.params for r in layers] == [34_944, 614_656, 885_120, 1_327_488, 884_992,
                                          26_218_496, 16_781_312, 4_097_000]
    assert [r.macs for r in layers[:2]] == [54 * 54 * 96 * 363, 26 * 26 * 256 * 2400]
    assert [r.macs for r in layers[:2]] == [101_616_768, 415_334_400]  # slide: 101M, 415M
    conv3_5 = 12 * 12 * 3 * 3 * (256 * 384 + 384 * 384 + 384 * 256)
    assert sum(r.macs for r in layers[2:5]) == conv3_5 == 445_906_944  # slide: 445M
    assert slide.params - layers[-1].params == 46_747_008  # the slide's "46M" leaves out the class layer
    assert (slide.params, slide.macs) == (50_844_008, 1_009_945_728)
    paper = summarize_model("alexnet")  # 224×224 with the paper's 55×55 first maps
    assert (paper.params, paper.macs) == (62_378_344, 1_135_256_096)
    assert paper.last_layer.weights == 256 * 6 * 6 * 4096


@pytest.mark.parametrize("name", deepnn.list_models(task="classification"))
def test_every_classifier_at_its_paper_input(name: str) -> None:
    """`deepnn summary NAME` works for the whole zoo: meta device, paper input, totals = the registry's."""
    s = summarize_model(name)
    assert s.params == deepnn.models.parameter_count(name) == sum(r.params for r in s.rows)
    assert s.flops == sum(r.flops for r in s.rows) > 0
