"""The lecture's CNN primitives from scratch (C1–C10), each checked against PyTorch in
``tests/test_ops.py``.

==========  ==============================================  ==========================================
item        concept                                         function
==========  ==============================================  ==========================================
C1          2-D cross-correlation, the double loop          :func:`corr2d`
C2          conv layer ``Y = X ⋆ W + b``; learning a kernel :func:`conv2d`, :func:`learn_kernel`
C3          image kernels on a real image                   :data:`IMAGE_KERNELS`, :func:`apply_kernels`
C4–C6       output shape with padding and stride            :func:`conv_output_shape`
C5–C8       padding, stride, input and output channels      :func:`conv2d`
C9          1×1 convolution = dense layer per pixel         :func:`conv1x1`
C10         max and average pooling; shift tolerance        :func:`pool2d`, :func:`vertical_edge_example`
==========  ==============================================  ==========================================

``padding`` is per side everywhere (as in PyTorch) except in :func:`conv_output_shape`,
whose ``pad_total`` is the lecture's total padding (both sides together).
"""

from .conv import conv1x1, conv2d, corr2d
from .edges import EDGE_KERNEL, learn_kernel, vertical_edge_example
from .kernels import IMAGE_KERNELS, apply_kernels
from .pool import POOL_MODES, pool2d
from .windows import as_pair, conv_output_shape, sliding_windows

__all__ = [
    "corr2d", "conv2d", "conv1x1", "conv_output_shape", "sliding_windows", "as_pair",
    "pool2d", "POOL_MODES", "IMAGE_KERNELS", "apply_kernels",
    "EDGE_KERNEL", "vertical_edge_example", "learn_kernel",
]
