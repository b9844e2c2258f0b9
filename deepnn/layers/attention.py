"""Attention from scratch: lecture items T2, T3 and the causal mask of T4.

Attention lets every query look at every key: scores ``α`` say how well query ``i`` matches
key ``j``, a softmax turns them into weights ``α'`` (each row sums to 1), and the output for
query ``i`` is ``b_i = Σ_j α'_ij v_j``. In self-attention queries, keys and values are all made
from the same inputs ``a``: ``q = W^q a``, ``k = W^k a``, ``v = W^v a``.

====  =============================================  ===================================================
item  concept                                        code
====  =============================================  ===================================================
T2    scores: dot-product and additive               :func:`dot_product_scores`, :func:`additive_scores`
T2    ``α' = softmax(α)``, ``b = Σ α' v``            :func:`attention`
T3    multi-head attention                           :class:`MultiHeadAttention`
T4    masked self-attention (no peeking ahead)       :func:`causal_mask`
====  =============================================  ===================================================

``tests/test_attention.py`` checks :func:`attention` against
``torch.nn.functional.scaled_dot_product_attention`` and :class:`MultiHeadAttention` against
``torch.nn.MultiheadAttention``, values and gradients.

Masks: :func:`attention` takes a boolean mask where ``True`` means *may attend*, as
``scaled_dot_product_attention`` does. :class:`MultiHeadAttention` keeps
``nn.MultiheadAttention``'s ``attn_mask``, where ``True`` means *may not* attend — pass
``~causal_mask(T)``, or ``is_causal=True``.

    >>> q = k = v = torch.randn(2, 5, 8)  # (B, T, d)
    >>> b, weights = attention(q, k, v, mask=causal_mask(5))
    >>> b.shape, weights.shape, weights[0, 0].tolist()  # the first query sees only the first key
    (torch.Size([2, 5, 8]), torch.Size([2, 5, 5]), [1.0, 0.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (q, k) -> scores (..., T_q, T_k)


def dot_product_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product scores ``α_ij = q_i · k_j / √d`` (Vaswani et al. 2017, "Attention is all you need").

    Dividing by ``√d`` keeps the scores' variance near 1 whatever ``d`` is, so the softmax does not
    saturate (dot products of random ``d``-vectors grow like ``√d``).

    Args:
        q: queries ``(..., T_q, d)``.
        k: keys ``(..., T_k, d)``.

    Returns:
        ``(..., T_q, T_k)``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise UserError(f"queries and keys must have the same size d to take dot products, got q {tuple(q.shape)} "
                        f"and k {tuple(k.shape)}; project them to a common size first")
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def additive_scores(
    q: torch.Tensor, k: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor | None, v: torch.Tensor
) -> torch.Tensor:
    """Additive scores ``α_ij = vᵀ tanh(W_q q_i + W_k k_j)`` (Bahdanau, Cho & Bengio 2015, "Neural machine
    translation by jointly learning to align and translate").

    A one-hidden-layer network scores each (query, key) pair, so queries and keys may have different sizes.

    Args:
        q: queries ``(..., T_q, d_q)``.
        k: keys ``(..., T_k, d_k)``.
        w_q: ``(h, d_q)``.
        w_k: ``(h, d_k)``; ``None`` when ``k`` already holds the projected keys ``W_k k_j`` ``(..., T_k, h)``
            (a decoder projects its source once per sentence, not once per output step).
        v: ``(h,)``.

    Returns:
        ``(..., T_q, T_k)``.
    """
    h_k = k.shape[-1] if w_k is None else w_k.shape[0]
    if w_q.shape[-1] != q.shape[-1] or (w_k is not None and w_k.shape[-1] != k.shape[-1]) \
            or not w_q.shape[0] == h_k == v.shape[0]:
        raise UserError(f"additive_scores needs w_q (h, d_q), w_k (h, d_k) (or None: keys already projected to h) "
                        f"and v (h,); got q {tuple(q.shape)}, k {tuple(k.shape)}, w_q {tuple(w_q.shape)}, "
                        f"w_k {None if w_k is None else tuple(w_k.shape)}, v {tuple(v.shape)}")
    keys = k if w_k is None else k @ w_k.T  # (..., T_k, h)
    hidden = (q @ w_q.T).unsqueeze(-2) + keys.unsqueeze(-3)  # (..., T_q, 1, h) + (..., 1, T_k, h)
    return torch.tanh(hidden) @ v  # (..., T_q, T_k, h) @ (h,) -> (..., T_q, T_k)


def causal_mask(size: int, size_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The mask of masked self-attention (T4): query ``i`` may attend to keys ``j ≤ i`` only.

    Args:
        size: number of queries ``T_q``.
        size_k: number of keys ``T_k``; default ``size``.
        device: where to build it.

    Returns:
        Boolean ``(T_q, T_k)``, ``True`` on and below the diagonal (= may attend).

        >>> causal_mask(3).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    return torch.ones(size, size if size_k is None else size_k, dtype=torch.bool, device=device).tril()


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    score: ScoreFn = dot_product_scores,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention: scores ``α``, weights ``α' = softmax(α)`` over the keys, output ``b_i = Σ_j α'_ij v_j`` (T2).

    With the default scores this is ``torch.nn.functional.scaled_dot_product_attention`` (which
    does not return the weights).

    Args:
        q: queries ``(..., T_q, d)``; e.g. ``(B, T_q, d)``, or ``(B, heads, T_q, d)``.
        k: keys ``(..., T_k, d)``.
        v: values ``(..., T_k, d_v)``.
        mask: boolean, broadcastable to ``(..., T_q, T_k)``; ``True`` = query ``i`` may attend to key ``j``
            (e.g. :func:`causal_mask`). Masked scores become ``−∞``, so their weights are exactly 0.
        score: ``(q, k) -> α`` ``(..., T_q, T_k)``; :func:`dot_product_scores` by default, or e.g.
            ``lambda q, k: additive_scores(q, k, w_q, w_k, w_v)``.

    Returns:
        ``(b, α')``: output ``(..., T_q, d_v)`` and weights ``(..., T_q, T_k)``.

    Raises:
        UserError: keys and values of different lengths, a mask that is not boolean, or a mask that
            leaves some query nothing to attend to.
    """
    if k.shape[-2] != v.shape[-2]:
        raise UserError(f"every key needs a value: k has {k.shape[-2]} positions (shape {tuple(k.shape)}), "
                        f"v has {v.shape[-2]} (shape {tuple(v.shape)})")
    scores = score(q, k)  # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise UserError(f"the attention mask must be boolean (True = may attend), got {mask.dtype}; "
                            "build it with a comparison or causal_mask, or convert with mask.bool()")
        tracing = torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", lambda: False)()
        if not tracing and not mask.any(dim=-1).all():  # a data-dependent check: left out of traced graphs
            raise UserError("the attention mask leaves a query with no key to attend to (a row with no True); "
                            "its softmax would be 0/0. Let every query attend to at least one key")
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # α', each row sums to 1
    return weights @ v, weights  # b_i = Σ_j α'_ij v_j


class MultiHeadAttention(nn.MultiheadAttention):
    """Multi-head attention (Vaswani et al. 2017), lecture item T3, as ``torch.nn.MultiheadAttention``
    with ``batch_first=True`` and our :func:`attention` inside.

    ``h`` heads attend in parallel, each in its own ``d = embed_dim / h``-dimensional subspace::

        Q, K, V = query W_Qᵀ + b_Q, key W_Kᵀ + b_K, value W_Vᵀ + b_V     (B, T, embed_dim) each
        split each into h heads                                         (B, h, T, d)
        head_i = attention(Q_i, K_i, V_i)                               (B, h, T_q, d)
        output = concat(head_1 … head_h) W_Oᵀ + b_O                     (B, T_q, embed_dim)

    Subclassing PyTorch's layer keeps its parameters (``in_proj_weight`` = ``[W_Q; W_K; W_V]``
    ``(3·embed_dim, embed_dim)``, ``in_proj_bias``, ``out_proj``), initialisation and state dict, so
    weights load both ways. ``forward`` takes PyTorch's arguments with PyTorch's meaning (boolean
    masks only). Dropout, ``kdim`` / ``vdim`` and ``add_bias_kv`` are not offered.

    Two switches (attributes): ``impl`` (``"scratch"``, the default) may be ``"sdpa"``: compute the heads
    with PyTorch's fused ``F.scaled_dot_product_attention`` when the weights are not asked for — the same
    function as :func:`attention` (``tests/test_seq2seq.py`` checks them against each other) — or ``"auto"``:
    the fused kernel on accelerators, ours on the CPU (where the fused kernel's backward pass made a
    translation Transformer's training step 1.3–1.4× slower, docs/benchmarks.md); ``keep_weights = True``
    stores every call's per-head weights ``(B, h, T_q, T_k)`` in ``last_weights``, for attention maps
    (:mod:`deepnn.analysis.attention_maps`).

    Args:
        embed_dim: model size; must be divisible by ``num_heads``.
        num_heads: number of heads ``h``.
        bias: learn the projections' biases.

        >>> mha = MultiHeadAttention(8, num_heads=2)
        >>> x = torch.randn(3, 5, 8)  # (B, T, embed_dim)
        >>> out, weights = mha(x, x, x, is_causal=True)  # masked self-attention
        >>> out.shape, weights.shape  # weights averaged over the heads
        (torch.Size([3, 5, 8]), torch.Size([3, 5, 5]))
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, device=None, dtype=None) -> None:
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise UserError(f"embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads} "
                            "(each head gets embed_dim / num_heads dimensions); change one of them")
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True, device=device, dtype=dtype)
        self.impl = "scratch"  # "sdpa" / "auto": F.scaled_dot_product_attention (always / off the CPU) when no
        # weights are asked for
        self.keep_weights = False  # keep each call's weights (B, h, T_q, T_k) in last_weights (attention maps)
        self.last_weights: torch.Tensor | None = None

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key`` / ``value``.

        Args:
            query: ``(B, T_q, embed_dim)``, or ``(T_q, embed_dim)`` unbatched.
            key: ``(B, T_k, embed_dim)``.
            value: ``(B, T_k, embed_dim)``.
            key_padding_mask: boolean ``(B, T_k)``, ``True`` = padding, ignore this key.
            need_weights: also return the attention weights (else ``None``).
            attn_mask: boolean ``(T_q, T_k)`` or ``(B·h, T_q, T_k)``, ``True`` = may **not** attend
                (PyTorch's convention, the opposite of :func:`attention`'s); e.g. ``~causal_mask(T)``.
            average_attn_weights: average the weights over the heads, ``(B, T_q, T_k)``; else ``(B, h, T_q, T_k)``.
            is_causal: without ``attn_mask``, use :func:`causal_mask` (with one, ``attn_mask`` is taken
                to be the causal mask, as in PyTorch).

        Returns:
            ``(output, weights)``: ``(B, T_q, embed_dim)`` and the weights (or ``None``).
        """
        unbatched = query.ndim == 2
        if unbatched:  # (T, embed_dim) -> (1, T, embed_dim)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        E, h = self.embed_dim, self.num_heads
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3 or not query.shape[-1] == key.shape[-1] == \
                value.shape[-1] == E or key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise UserError(f"MultiHeadAttention({E}, {h}) takes query (B, T_q, {E}) and key, value (B, T_k, {E}) "
                            f"(batch first); got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        B, T_q, T_k = query.shape[0], query.shape[1], key.shape[1]

        allowed = self._allowed(attn_mask, key_padding_mask, is_causal, B, T_q, T_k, query.device)
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)  # (E, E) each
        b_q, b_k, b_v = (None, None, None) if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).view(B, T_q, h, E // h).transpose(1, 2)  # (B, h, T_q, d)
        k = F.linear(key, w_k, b_k).view(B, T_k, h, E // h).transpose(1, 2)  # (B, h, T_k, d)
        v = F.linear(value, w_v, b_v).view(B, T_k, h, E // h).transpose(1, 2)  # (B, h, T_k, d)
        fused = self.impl == "sdpa" or (self.impl == "auto" and query.device.type != "cpu")
        if fused and not need_weights and not self.keep_weights:  # PyTorch's fused kernel, the same math
            heads, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), None
        else:
            heads, weights = attention(q, k, v, mask=allowed)  # (B, h, T_q, d), (B, h, T_q, T_k)
            if self.keep_weights:
                self.last_weights = weights.detach()
        out = F.linear(heads.transpose(1, 2).reshape(B, T_q, E), self.out_proj.weight, self.out_proj.bias)

        if not need_weights or weights is None:
            weights = None
        elif average_attn_weights:
            weights = weights.mean(dim=1)  # (B, T_q, T_k)
        if unbatched:
            out = out[0]
            weights = None if weights is None else weights[0]
        return out, weights

    def _allowed(
        self, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, is_causal: bool,
        B: int, T_q: int, T_k: int, device: torch.device,
    ) -> torch.Tensor | None:
        """PyTorch's "may not attend" masks as one "may attend" mask broadcastable to ``(B, h, T_q, T_k)``."""
        for name, m in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask)):
            if m is not None and m.dtype != torch.bool:
                raise UserError(f"{name} must be boolean (True = may not attend), got {m.dtype}; the scratch "
                                "MultiHeadAttention does not take additive float masks")
        allowed = None
        if attn_mask is not None:
            if attn_mask.shape == (T_q, T_k):
                allowed = ~attn_mask
            elif attn_mask.shape == (B * self.num_heads, T_q, T_k):
                allowed = ~attn_mask.view(B, self.num_heads, T_q, T_k)
            else:
                raise UserError(f"attn_mask must have shape ({T_q}, {T_k}) or ({B * self.num_heads}, {T_q}, {T_k}), "
                                f"got {tuple(attn_mask.shape)}")
        elif is_causal:
            allowed = causal_mask(T_q, T_k, device=device)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, T_k):
                raise UserError(f"key_padding_mask must have shape ({B}, {T_k}) (batch, keys), "
                                f"got {tuple(key_padding_mask.shape)}")
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
            allowed = keep if allowed is None else allowed & keep
        return allowed
