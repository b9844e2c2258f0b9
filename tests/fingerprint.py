"""Structural fingerprints of the zoo: what a model computes, layer by layer, as reviewable text.

A fingerprint is one line per step of a real forward pass, in execution order:

* every leaf module call, with its type and the hyper-parameters that define it (convolution
  channels, kernel, stride, padding, dilation, groups, bias; pooling kind, window, stride, padding,
  ceil mode; dropout p; batch norm and LRN settings; dense in → out) and its output shape;
* every *functional* call made in a non-leaf ``forward`` (``torch.relu``, ``torch.sigmoid``,
  ``F.max_pool2d``, ``torch.cat``, the ``+`` of a residual, ...), seen through a
  ``TorchFunctionMode`` and interleaved with the module calls. Calls made inside a leaf module
  (``nn.Conv2d`` calling ``F.conv2d``, our scratch layers calling ``unfold``) belong to that
  module's line and are not repeated.

``inplace`` flags are left out (they change memory, not the function), and the scratch layers of
:mod:`deepnn.layers.conv` print as their ``torch.nn`` parent, so both conv implementations share
one fingerprint. The forward runs on the meta device: shapes and calls without arithmetic, so even
VGG-19 at 224×224 and Inception-ResNet-v2 at 299×299 take a fraction of a second.

Cases (:func:`cases`): every registered classification model at its builder's defaults (the
paper's network), the same model in the Fashion-MNIST setting (``-28``: 1 channel, 28×28, 10
classes, where that differs; it is what the recipes train), and the options that change the
layout (``alexnet-lrn``, the auxiliary heads in training mode). Snapshots live in
``tests/fingerprints/<case>.txt``; after an intended architecture change, regenerate and review
the diff:

    .venv/bin/python tests/fingerprint.py --update          # rewrite every snapshot
    .venv/bin/python tests/fingerprint.py --show lenet      # print one fingerprint
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

SNAPSHOTS = Path(__file__).resolve().parent / "fingerprints"
FMNIST = {"num_classes": 10, "in_channels": 1, "input_size": 28}

# Functional calls worth a line when a non-leaf forward makes them. Names are compared after
# stripping underscores, so ``relu_``, ``Tensor.__add__`` and ``F._max_pool2d`` match
# ``relu``, ``add`` and ``max_pool2d``.
ACTIVATIONS = frozenset({
    "relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "hardtanh",
    "hardsigmoid", "hardswish", "mish", "softplus", "softsign", "logsigmoid", "prelu", "glu", "threshold",
    "softmax", "log_softmax",
})
CONV_FUNCTIONS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
})
POOL_FUNCTIONS = frozenset({
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d", "fractional_max_pool2d", "fractional_max_pool3d",
})
OTHER_FUNCTIONS = frozenset({
    "linear", "bilinear", "matmul", "bmm",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm",
    "cat", "concat", "concatenate", "stack",
    "add", "radd", "iadd", "sub", "rsub", "isub", "mul", "rmul", "imul", "div", "truediv", "rtruediv",
    "mean", "amax", "max",
})
RECORDED_FUNCTIONS = ACTIVATIONS | CONV_FUNCTIONS | POOL_FUNCTIONS | OTHER_FUNCTIONS


def function_name(func: Any) -> str:
    """``F._max_pool2d`` → ``max_pool2d``, ``Tensor.__radd__`` → ``radd``, ``torch.relu_`` → ``relu``."""
    return getattr(func, "__name__", repr(func)).strip("_")


# --------------------------------------------------------------------------- formatting


def _pair(v: Any) -> str:
    """``(3, 3)`` → ``3``, ``(1, 7)`` → ``1x7``, ``'same'`` → ``'same'``."""
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return str(v[0]) if len(set(v)) == 1 else "x".join(str(i) for i in v)
    return str(v)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _torch_type(module: nn.Module) -> str:
    """The ``torch.nn`` class a module is (our scratch ``Conv2d`` prints as ``Conv2d``)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch."):
            if cls is nn.Module:
                break
            return cls.__name__
    return type(module).__name__


def describe_module(m: nn.Module) -> str:
    """Type and defining hyper-parameters of a leaf module, e.g. ``Conv2d(1→6, k=5, s=1, p=2, d=1, g=1, bias)``."""
    kind = _torch_type(m)
    if isinstance(m, nn.modules.conv._ConvNd):
        bias = "bias" if m.bias is not None else "no bias"
        return (f"{kind}({m.in_channels}→{m.out_channels}, k={_pair(m.kernel_size)}, s={_pair(m.stride)}, "
                f"p={_pair(m.padding)}, d={_pair(m.dilation)}, g={m.groups}, {bias}"
                + ("" if m.padding_mode == "zeros" else f", {m.padding_mode}") + ")")
    if isinstance(m, nn.modules.pooling._MaxPoolNd):
        return (f"{kind}(k={_pair(m.kernel_size)}, s={_pair(m.stride)}, p={_pair(m.padding)}, "
                f"d={_pair(m.dilation)}, ceil={m.ceil_mode})")
    if isinstance(m, nn.modules.pooling._AvgPoolNd):
        extra = "".join(
            f", {k}={getattr(m, k)}" for k in ("count_include_pad", "divisor_override")
            if hasattr(m, k) and getattr(m, k) != {"count_include_pad": True, "divisor_override": None}[k]
        )
        return (f"{kind}(k={_pair(m.kernel_size)}, s={_pair(m.stride)}, p={_pair(m.padding)}, "
                f"ceil={m.ceil_mode}{extra})")
    if isinstance(m, (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return f"{kind}(out={_pair(m.output_size)})"
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return f"{kind}(p={_num(m.p)})"
    if isinstance(m, nn.modules.batchnorm._NormBase):
        flags = ("" if m.affine else ", affine=False") + (
            "" if m.track_running_stats else ", track_running_stats=False")
        return f"{kind}({m.num_features}, eps={_num(m.eps)}, momentum={_num(m.momentum)}{flags})"
    if isinstance(m, nn.LocalResponseNorm):
        return f"{kind}(size={m.size}, alpha={_num(m.alpha)}, beta={_num(m.beta)}, k={_num(m.k)})"
    if isinstance(m, nn.Linear):
        return f"{kind}({m.in_features}→{m.out_features}, {'bias' if m.bias is not None else 'no bias'})"
    extra = ", ".join(p for p in m.extra_repr().split(", ") if p and not p.startswith("inplace="))
    return f"{kind}({extra})"


def _arg(a: Any) -> str:
    if isinstance(a, Tensor):
        return "T"
    if isinstance(a, list):
        return "[" + ", ".join(_arg(x) for x in a) + "]"
    if isinstance(a, tuple):
        return "(" + ", ".join(_arg(x) for x in a) + ")"
    return _num(a)


def describe_call(name: str, args: tuple, kwargs: dict) -> str:
    """``F.max_pool2d(T, 3, 2, 1)``-style text of a functional call (``inplace`` left out)."""
    parts = [_arg(a) for a in args] + [f"{k}={_arg(v)}" for k, v in sorted(kwargs.items()) if k != "inplace"]
    return f"F.{name}({', '.join(parts)})"


def _shape(out: Any) -> str:
    shapes = ["x".join(map(str, t.shape[1:])) or "scalar" for t in tree_leaves(out) if isinstance(t, Tensor)]
    return ", ".join(shapes) if shapes else "-"


# --------------------------------------------------------------------------- recording


@dataclass
class Step:
    """One line of a fingerprint: where (module path), what (description), output shape."""

    path: str
    what: str
    shape: str = "?"
    module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def is_call(self) -> bool:
        """A functional call (``F.relu(T)``) rather than a leaf module."""
        return self.what.startswith("F.")

    @property
    def kind(self) -> str:
        """``Conv2d``, ``ReLU``, ``F.relu``, ... (the description up to its arguments)."""
        return self.what.split("(", 1)[0]

    def __str__(self) -> str:
        return f"{self.path or '<model>'}: {self.what} -> {self.shape}"


class _Recorder(TorchFunctionMode):
    """Logs whitelisted functional calls made directly by a non-leaf module's ``forward``."""

    def __init__(self, stack: list[tuple[str, bool]], steps: list[Step], names: frozenset[str],
                 calls: list[tuple[str, str]] | None):
        super().__init__()
        self.stack, self.steps, self.names, self.calls = stack, steps, names, calls

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = function_name(func)
        if self.calls is not None:
            self.calls.append((self.stack[-1][0] if self.stack else "", name))
        if self.stack and not self.stack[-1][1]:  # inside a non-leaf forward (a leaf's own calls are its line)
            if name in self.names:
                self.steps.append(Step(self.stack[-1][0], describe_call(name, args, kwargs), _shape(out)))
        return out


def trace(
    model: nn.Module,
    x: Tensor,
    names: frozenset[str] = RECORDED_FUNCTIONS,
    calls: list[tuple[str, str]] | None = None,
) -> list[Step]:
    """The steps of ``model(x)`` in execution order (runs the forward under ``torch.no_grad``).

    ``calls``, if given, receives ``(module path, function name)`` of every torch function the
    forward calls directly, leaf modules' own calls included (the scratch contract reads it).
    """
    steps: list[Step] = []
    stack: list[tuple[str, bool]] = []  # (path, is leaf) of the modules being called
    handles = []

    def pre(path: str, leaf: bool):
        def hook(module: nn.Module, args: Any) -> None:
            stack.append((path, leaf))
            if leaf:
                steps.append(Step(path, describe_module(module), module=module))
        return hook

    def post(path: str, leaf: bool):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            stack.pop()
            if leaf:  # the latest open step of this module
                step = next(s for s in reversed(steps) if s.module is module and s.shape == "?")
                step.shape = _shape(out)
        return hook

    for path, module in model.named_modules():
        leaf = next(module.children(), None) is None
        handles.append(module.register_forward_pre_hook(pre(path, leaf)))
        handles.append(module.register_forward_hook(post(path, leaf)))
    try:
        with torch.no_grad(), _Recorder(stack, steps, names, calls):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return steps


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One fingerprinted configuration: ``create_model(model, **kwargs)`` in train or eval mode."""

    id: str
    model: str
    kwargs: dict[str, Any]
    train: bool = False

    @property
    def header(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in sorted(self.kwargs.items()))
        c, s = self.input_shape[0], self.input_shape[1]
        mode = "train" if self.train else "eval"
        return f"# {self.id}: create_model({self.model!r}{args}), input (B, {c}, {s}, {s}), {mode} mode"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        import deepnn

        defaults = deepnn.models.model_info(self.model).defaults
        c = self.kwargs.get("in_channels", defaults["in_channels"])
        s = self.kwargs.get("input_size", defaults["input_size"])
        return c, s, s

    def build(self, device: str | torch.device = "meta", conv_impl: str = "torch") -> nn.Module:
        import deepnn

        with torch.device(device):
            model = deepnn.create_model(self.model, conv_impl=conv_impl, **self.kwargs)
        return model.train(self.train)

    def input(self, device: str | torch.device = "meta", batch: int = 2) -> Tensor:
        return torch.zeros(batch, *self.input_shape, device=device)  # 2: batch norm trains on one value otherwise

    def steps(self, conv_impl: str = "torch", calls: list[tuple[str, str]] | None = None) -> list[Step]:
        return trace(self.build(conv_impl=conv_impl), self.input(), calls=calls)

    def fingerprint(self, conv_impl: str = "torch", calls: list[tuple[str, str]] | None = None) -> str:
        return self.text(self.steps(conv_impl, calls))

    def text(self, steps: list[Step]) -> str:
        """The snapshot text: the header line, then one line per step."""
        return "\n".join([self.header, *map(str, steps)]) + "\n"

    @property
    def snapshot(self) -> Path:
        return SNAPSHOTS / f"{self.id}.txt"


# Options that change the layout, beyond the defaults and the Fashion-MNIST setting.
EXTRA_CASES = [
    Case("alexnet-lrn", "alexnet", {"lrn": True}),
    Case("googlenet-aux", "googlenet", {"aux_logits": True}, train=True),
    Case("inception_v3-aux", "inception_v3", {"aux_logits": True}, train=True),
]


def cases() -> Iterator[Case]:
    """Every registered classification model at its defaults, in the Fashion-MNIST setting, and the extras."""
    import deepnn

    for name in deepnn.list_models(task="classification"):
        yield Case(name, name, {})
        defaults = deepnn.models.model_info(name).defaults
        if any(defaults.get(k) != v for k, v in FMNIST.items()):
            yield Case(f"{name}-28", name, dict(FMNIST))
    yield from EXTRA_CASES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite every snapshot in tests/fingerprints/")
    parser.add_argument("--show", metavar="CASE", help="print one case's fingerprint")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    all_cases = {c.id: c for c in cases()}
    if args.show:
        print(all_cases[args.show].fingerprint(), end="")
        return 0
    if args.update:
        SNAPSHOTS.mkdir(exist_ok=True)
        stale = {p.stem for p in SNAPSHOTS.glob("*.txt")} - set(all_cases)
        for name in sorted(stale):
            (SNAPSHOTS / f"{name}.txt").unlink()
        changed = 0
        for case in all_cases.values():
            text = case.fingerprint()
            if not case.snapshot.exists() or case.snapshot.read_text() != text:
                case.snapshot.write_text(text)
                changed += 1
                print(f"wrote {case.snapshot}")
        print(f"{len(all_cases)} cases, {changed} snapshots written, {len(stale)} removed; "
              "review `git diff tests/fingerprints`")
        return 0
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
