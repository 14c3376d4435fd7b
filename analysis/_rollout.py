"""Attention rollout (Abnar & Zuidema 2020), gradient-weighted rollout and encoder-decoder
relevance (Chefer et al. 2021), and helpers to read one query's row out of a rollout."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ._common import Layers, as_bool_mask, as_float, layer_list

HeadFusion = Literal["mean", "max", "min"]
_FUSIONS = ("mean", "max", "min")


def _fuse(w: Tensor, head_fusion: str) -> Tensor:
    """``[batch, heads, q, k]`` -> ``[batch, q, k]`` by mean / max / min over heads."""
    if head_fusion == "mean":
        return w.mean(dim=1)
    if head_fusion == "max":
        return w.amax(dim=1)
    return w.amin(dim=1)


def _discard_lowest(a: Tensor, ratio: float) -> Tensor:
    """Zero the lowest ``int(ratio * k)`` entries of every row of ``a [batch, q, k]`` in place,
    never the diagonal (self / CLS->CLS) entry."""
    n_drop = int(ratio * a.shape[-1])
    if n_drop == 0:
        return a
    rank = a.clone()
    rank.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))  # protect self entries
    idx = rank.topk(min(n_drop, a.shape[-1] - 1), dim=-1, largest=False).indices  # [batch, q, n_drop]
    return a.scatter_(-1, idx, 0.0)


def _row_normalise_(a: Tensor) -> Tensor:
    """Divide each row of ``a [..., q, k]`` by its sum (in place); all-zero rows stay zero."""
    return a.div_(a.sum(dim=-1, keepdim=True).clamp_(min=torch.finfo(a.dtype).tiny))


def attention_rollout(
    layers: Layers,
    *,
    head_fusion: HeadFusion = "mean",
    residual: float = 0.5,
    discard_ratio: float = 0.0,
    start_layer: int = 0,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    ``layers``: sequence of ``[batch, heads, n, n]`` self-attention maps (one per layer, forward
    order) or ``[L, batch, heads, n, n]`` -> ``R [batch, n, n]``, ``R[b, i, j]`` = share of token
    ``i``'s final representation that flows from input token ``j``.

    Per layer: ``A_l = fuse_h(attention)`` (``head_fusion`` mean / max / min over heads); optionally
    the lowest ``int(discard_ratio * n)`` entries of every row are set to 0 (never the diagonal,
    i.e. the self / CLS->CLS entry); padding keys (``key_mask [batch, n]`` False) are set to 0; then
    ``Ã_l = rownorm((1 - residual) * A_l + residual * I)`` with rows normalised to sum 1 (the DESIGN's
    ``α = 1 - residual``; default 0.5 / 0.5). ``R = Ã_{L-1} ··· Ã_{start_layer}``. Rows of ``R``
    sum to 1; rows of padding queries are set to 0.
    """
    if head_fusion not in _FUSIONS:
        raise ValueError(f"head_fusion must be one of {_FUSIONS}, got {head_fusion!r}")
    if not 0.0 <= float(residual) <= 1.0:
        raise ValueError(f"residual must be within [0, 1], got {residual}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be within [0, 1), got {discard_ratio}")
    ws = layer_list(layers, square=True)
    if not isinstance(start_layer, int) or not 0 <= start_layer < len(ws):
        raise ValueError(f"start_layer must be an int within [0, {len(ws) - 1}], got {start_layer!r}")
    b, _, n, _ = ws[0].shape
    km = None
    if key_mask is not None:
        km = as_bool_mask(key_mask, "key_mask", n, "n").to(ws[0].device).expand(b, n)  # [batch, n]
    eye = torch.eye(n, dtype=torch.float32, device=ws[0].device)  # [n, n]
    r: Tensor | None = None
    for w in ws[start_layer:]:
        a = _fuse(w, head_fusion)  # [batch, n, n], a fresh tensor (never the caller's)
        if discard_ratio > 0:
            _discard_lowest(a, discard_ratio)
        if km is not None:
            a.masked_fill_(~km[:, None, :], 0.0)  # padding keys: [batch, 1, n]
        a.mul_(1.0 - residual).add_(eye, alpha=residual)
        _row_normalise_(a)
        r = a if r is None else torch.matmul(a, r)  # [batch, n, n]
    assert r is not None
    if km is not None:
        r = r.masked_fill(~km[:, :, None], 0.0)  # padding query rows
    return r


def _grad_weighted(a: Tensor, g: Tensor) -> Tensor:
    """Chefer et al. 2021 eq. 5: ``mean_h[(∇A ⊙ A)⁺]``, ``[batch, heads, q, k]`` -> ``[batch, q, k]``."""
    return (g * a).clamp_(min=0.0).mean(dim=1)


def _check_grads(attn: list[Tensor], grads: Layers, name: str) -> list[Tensor]:
    gs = layer_list(grads, name)
    if len(gs) != len(attn):
        raise ValueError(f"{name} has {len(gs)} layers but the attention has {len(attn)}")
    for i, (a, g) in enumerate(zip(attn, gs)):
        if a.shape != g.shape:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(g.shape)} but its attention layer has {tuple(a.shape)}; "
                "pair each gradient with its own layer, in forward order"
            )
    return gs


def gradient_rollout(
    attentions: Layers,
    gradients: Layers,
    *,
    start_layer: int = 0,
    normalize: bool = False,
) -> Tensor:
    """Gradient-weighted attention rollout (Chefer et al. 2021, "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", eqs. 5-6).

    ``attentions``, ``gradients``: sequences (forward order) of ``[batch, heads, n, n]``, where
    ``gradients[l] = d target / d attentions[l]`` for the *same* layer ``l`` (backward hooks fire in
    reverse order: re-order before calling) -> ``R [batch, n, n]``.
    ``Ā_l = mean_h[(∇A_l ⊙ A_l)⁺]``; ``R = I``; ``R ← R + Ā_l · R`` for ``l = start_layer .. L-1``.
    ``normalize=True`` divides each row of the result by its sum (rows then sum to 1).
    """
    attn = layer_list(attentions, "attentions", square=True)
    grads = _check_grads(attn, gradients, "gradients")
    if not isinstance(start_layer, int) or not 0 <= start_layer < len(attn):
        raise ValueError(f"start_layer must be an int within [0, {len(attn) - 1}], got {start_layer!r}")
    b, _, n, _ = attn[0].shape
    r = torch.eye(n, dtype=torch.float32, device=attn[0].device).repeat(b, 1, 1)  # [batch, n, n]
    for a, g in zip(attn[start_layer:], grads[start_layer:]):
        r = r + torch.matmul(_grad_weighted(a, g), r)  # [batch, n, n]
    return _row_normalise_(r) if normalize else r


def _normalised_residual(r: Tensor) -> Tensor:
    """Chefer et al. 2021 eqs. 8-9: ``R̄ = rownorm(R - I) + I`` (rows of ``R - I`` summing to 0 stay 0)."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    return _row_normalise_(r - eye) + eye


def encoder_decoder_relevance(
    encoder_self: Layers,
    decoder_self: Layers,
    cross: Layers,
    *,
    encoder_grads: Layers | None = None,
    decoder_grads: Layers | None = None,
    cross_grads: Layers | None = None,
    normalize_residual: bool = True,
) -> Tensor:
    """Relevance of every decoder token over the encoder tokens through cross-attention
    (Chefer et al. 2021, ICCV, rules for encoder-decoder transformers).

    ``encoder_self``: layers of ``[batch, heads, e, e]``; ``decoder_self``: layers of
    ``[batch, heads, d, d]``; ``cross``: layers of ``[batch, heads, d, e]`` (one per decoder layer,
    the decoder's self-attention of a layer comes before its cross-attention). ``*_grads``: matching
    gradients ``d target / d attention``; when a group's gradients are None its maps are used as
    ``Ā = mean_h A`` (plain attention), otherwise ``Ā = mean_h[(∇A ⊙ A)⁺]`` (eq. 5).
    Returns ``R_de [batch, d, e]``.

    Update rules (start ``R_ee = I_e``, ``R_dd = I_d``, ``R_de = 0``):
      encoder self-attention (eq. 6):  ``R_ee ← R_ee + Ā · R_ee``
      decoder self-attention (eqs. 6-7): ``R_dd ← R_dd + Ā · R_dd``; ``R_de ← R_de + Ā · R_de``
      cross-attention (eq. 10):        ``R_de ← R_de + R̄_ddᵀ · Ā · R̄_ee``
    with ``R̄ = rownorm(R - I) + I`` (eqs. 8-9; ``normalize_residual=False`` uses ``R`` as is).
    Eq. 11 (``R_dd ← R_dd + Ā · R_ed``) adds nothing here: the encoder never attends to the
    decoder, so ``R_ed = 0``.
    """
    enc = layer_list(encoder_self, "encoder_self", square=True)
    dec = layer_list(decoder_self, "decoder_self", square=True)
    crs = layer_list(cross, "cross")
    b, _, e, _ = enc[0].shape
    d = dec[0].shape[-1]
    if len(crs) != len(dec):
        raise ValueError(f"cross has {len(crs)} layers but decoder_self has {len(dec)}: one of each per decoder layer")
    if crs[0].shape[0] != b or dec[0].shape[0] != b or crs[0].shape[-2:] != (d, e):
        raise ValueError(
            f"cross must be [batch={b}, heads, d={d}, e={e}], got {tuple(crs[0].shape)}"
            f" (decoder_self {tuple(dec[0].shape)}, encoder_self {tuple(enc[0].shape)})"
        )

    def fused(maps: list[Tensor], grads: Layers | None, name: str) -> list[Tensor]:
        if grads is None:
            return [m.mean(dim=1) for m in maps]  # [batch, q, k]
        return [_grad_weighted(m, g) for m, g in zip(maps, _check_grads(maps, grads, name))]

    enc_bar = fused(enc, encoder_grads, "encoder_grads")
    dec_bar = fused(dec, decoder_grads, "decoder_grads")
    crs_bar = fused(crs, cross_grads, "cross_grads")

    r_ee = torch.eye(e, dtype=torch.float32, device=enc[0].device).repeat(b, 1, 1)  # [batch, e, e]
    for a in enc_bar:
        r_ee = r_ee + torch.matmul(a, r_ee)
    r_dd = torch.eye(d, dtype=torch.float32, device=enc[0].device).repeat(b, 1, 1)  # [batch, d, d]
    r_de = torch.zeros(b, d, e, dtype=torch.float32, device=enc[0].device)  # [batch, d, e]
    r_ee_bar = _normalised_residual(r_ee) if normalize_residual else r_ee
    for a_self, a_cross in zip(dec_bar, crs_bar):
        r_dd = r_dd + torch.matmul(a_self, r_dd)
        r_de = r_de + torch.matmul(a_self, r_de)
        r_dd_bar = _normalised_residual(r_dd) if normalize_residual else r_dd
        r_de = r_de + r_dd_bar.transpose(-1, -2) @ a_cross @ r_ee_bar  # [batch, d, d] @ [batch, d, e] @ [batch, e, e]
    return r_de


def rollout_from_query(rollout: Tensor, query_index: int | Sequence[int]) -> Tensor:
    """One query's row of a rollout (or any ``[batch, q, k]`` map): ``[batch, q, k]`` -> ``[batch, k]``.

    ``query_index``: an int (negative counts from the end: ``-1`` = last token, the next-token
    position of a decoder-only model) or several ints, whose rows are averaged (still summing to 1).
    """
    r = as_float(rollout, "rollout")
    if r.ndim != 3:
        raise ValueError(f"rollout must be [batch, q, k], got shape {tuple(r.shape)}")
    q = r.shape[1]
    idx = [query_index] if isinstance(query_index, int) else list(query_index)
    if not idx or not all(isinstance(i, int) and -q <= i < q for i in idx):
        raise ValueError(f"query_index must be one or more ints within [-{q}, {q - 1}], got {query_index!r}")
    return r[:, idx, :].mean(dim=1)  # [batch, len(idx), k] -> [batch, k]


def rollout_cls_to_patches(rollout: Tensor, *, grid: tuple[int, int], cls_index: int | None = 0) -> Tensor:
    """Rollout from the CLS token to the image patches, on the patch grid (ViT).

    ``rollout [batch, n, n]`` with the ``h * w`` patch tokens last (after CLS / distillation /
    register tokens) -> ``[batch, h, w]``. ``cls_index=None`` (models without CLS, e.g. Swin-style
    pooling) averages the rows of all patch tokens instead. Values are the raw rollout shares
    (they sum to at most 1; the remainder sits on the non-patch tokens).
    """
    r = as_float(rollout, "rollout")
    if r.ndim != 3:
        raise ValueError(f"rollout must be [batch, n, n], got shape {tuple(r.shape)}")
    if len(grid) != 2 or not all(isinstance(g, int) and g > 0 for g in grid):
        raise ValueError(f"grid must be two positive ints (h, w), got {grid!r}")
    h, w = grid
    n = r.shape[-1]
    if h * w > n:
        raise ValueError(f"grid {h}x{w} = {h * w} patches but the rollout has only {n} tokens")
    first_patch = n - h * w
    if cls_index is None:
        row = r[:, first_patch:, first_patch:].mean(dim=1)  # [batch, h*w]
    else:
        if not -n <= cls_index < n:
            raise ValueError(f"cls_index {cls_index} is outside the {n} tokens")
        row = r[:, cls_index, first_patch:]  # [batch, h*w]
    return row.reshape(r.shape[0], h, w)  # [batch, h, w]
