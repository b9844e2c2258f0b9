"""The model zoo behind one registry (``create_model``, ``list_models``).

Importing this package imports every family module so their builders register.
One file per family: ``lenet``, ``alexnet``, ``vgg``, ``nin``, ``googlenet``, ``inception``
(Inception-BN, v3), ``inception_v4`` (v4, Inception-ResNet-v2), ``resnet``, ``highway``;
``_blocks`` holds what they share.

``charlm`` (lecture item R3): the character-level language models, registered under task
``"language_model"`` (``hello``, ``char_rnn``, ``char_lstm``, ``char_gru``; ``create_model`` needs
``vocab_size``), with :class:`CharRNN`, :class:`CharLM`, :func:`sample`, :func:`hello_example`.

``transformer`` and ``seq2seq_attn`` (lecture items T1, T4): ``transformer_mt`` and ``seq2seq_attn``
(task ``"seq2seq"``, translation) and ``char_transformer`` (task ``"language_model"``).
"""

from . import (  # noqa: F401  (registers the builders)
    alexnet,
    googlenet,
    highway,
    inception,
    inception_v4,
    lenet,
    nas_child,
    nin,
    resnet,
    seq2seq_attn,
    transformer,
    vgg,
)
from ._registry import (
    ModelInfo,
    count_parameters,
    create_model,
    list_models,
    model_info,
    parameter_count,
    register_model,
)
from .charlm import CharLM, CharRNN, detach_state, hello_example, sample

__all__ = [
    "CharLM",
    "CharRNN",
    "detach_state",
    "ModelInfo",
    "count_parameters",
    "create_model",
    "hello_example",
    "list_models",
    "model_info",
    "parameter_count",
    "register_model",
    "sample",
]
