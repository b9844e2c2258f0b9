"""What the classic CNNs cost: the lecture's complexity tables (C12–C19), measured.

1. The zoo at its paper input (3×224×224; LeNet 1×28×28): parameters, multiply-adds (MACs) and the
   share of the first dense layer ("curse of the last layer", C14).
2. The complexity table AlexNet vs LeNet, layer by layer (C12), at the slide's geometry (220×220
   input: the slide's 54×54 first maps).
3. Inception block vs one 3×3 and one 5×5 convolution, 192 → 256 channels at 28×28 (C16).

Everything comes from ``deepnn.analysis.summary`` (PyTorch's FlopCounterMode; 1 MAC = 2 FLOPs) on
models built on the meta device, so no weights are allocated and it takes a few seconds.

Run:  python examples/04_modern_cnns.py
"""

from __future__ import annotations

import torch

from deepnn.analysis.summary import compare_markdown, inception_comparison, si, summarize_model, totals_markdown
from deepnn.models import model_info

ZOO = ["lenet", "alexnet", "vgg11", "vgg16", "nin", "googlenet", "inception_bn", "resnet18", "resnet50"]


def main() -> None:
    torch.set_num_threads(1)
    print("C12–C18 the zoo at its paper input (C19's x axis is the GFLOPs column)")
    print(f"    {'model':<13} {'paper':<32} {'input':<10} {'params':>12} {'MACs':>8} {'GFLOPs':>7}  "
          "first dense layer (C14)")
    for name in ZOO:
        s = summarize_model(name)
        last = s.last_layer
        dense = f"{last.weights:,} = {last.share:.1%} of the params" if last is not None else "none (global avg pool)"
        shape = "×".join(map(str, s.input_shape))
        print(f"    {name:<13} {model_info(name).paper[:32]:<32} {shape:<10} {s.params:>12,} {si(s.macs):>8} "
              f"{s.flops / 1e9:>7.3f}  {dense}")

    vgg16 = summarize_model("vgg16").last_layer
    lenet = summarize_model("lenet").last_layer
    print(f"\nC14 curse of the last layer: LeNet {lenet}; VGG-16 {vgg16}")

    print("\nC12 AlexNet vs LeNet, per layer (AlexNet at 3×220×220, the slide's 54×54 first maps)")
    print(compare_markdown(summarize_model("alexnet", (3, 220, 220)), summarize_model("lenet")))
    print("(the slide's AlexNet \"46M\" leaves out the 4.1M of the 1000-way class layer)")

    print("\nC16 Inception block vs plain convolutions, 192×28×28 -> 256×28×28 "
          "(slide: 0.16M/128M, 0.44M/346M, 1.22M/963M)")
    print(totals_markdown(inception_comparison((192, 28, 28), 256)))


if __name__ == "__main__":
    main()
