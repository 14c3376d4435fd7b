"""`prepare_*` for analysis figures: head entropy, pattern labels, layer consistency, head distance,
cross-input consistency, faithfulness deletion curves and importance comparison."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from app.figures._data import CAVEAT, BarsData, CurvesData, MatrixData
from app.figures._reduce import as_float_array

STATS_CAPTION = "Summaries of attention weights describe where heads look, not what matters for the prediction."


def _layer_ids(layers: Sequence[int] | None, n: int) -> list[int]:
    ids = list(range(n)) if layers is None else [int(i) for i in layers]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} layer numbers for {n} layers")
    return ids


def head_names(n_layers: int, n_heads: int, layers: Sequence[int] | None = None) -> tuple[str, ...]:
    """Flat head names "L{layer}H{head}" in layer-major order: index = layer_index * n_heads + head."""
    return tuple(f"L{i}H{j}" for i in _layer_ids(layers, n_layers) for j in range(n_heads))


def _layer_by_head(values: np.ndarray, layers: Sequence[int] | None, **kw) -> MatrixData:
    """[L, H] -> MatrixData with rows "L{layer}", columns "H{head}", colour scale from 0."""
    n_layers, n_heads = values.shape
    return MatrixData(
        values=values,
        row_labels=tuple(f"L{i}" for i in _layer_ids(layers, n_layers)),
        col_labels=tuple(f"H{j}" for j in range(n_heads)),
        x_title="head",
        y_title="layer",
        zmin=0.0,
        **kw,
    )


def prepare_entropy(
    entropy,
    *,
    layers: Sequence[int] | None = None,
    max_entropy: float | None = None,
    unit: str = "nats",
    title: str = "Head entropy (nats)",
    caption: str = STATS_CAPTION,
) -> MatrixData:
    """Head-entropy heatmap: [L, H] -> `MatrixData` (rows = layers, columns = heads).

    Entropy of a head = mean over query rows of −Σ_j a_ij log a_ij (Clark et al. 2019); low =
    focused, high = broad (uniform over n keys gives log n). `max_entropy` (e.g. log n, or 1 for
    entropy normalised by log n with `unit="normalised"`) fixes the top of the colour scale.
    """
    arr = as_float_array(entropy, name="entropy", ndim=(2,))
    return _layer_by_head(
        arr, layers, title=title, caption=caption, value_name=f"entropy ({unit})",
        hover="{row} {col}: {value}" + (f" {unit}" if unit == "nats" else ""), zmax=max_entropy,
        colorscale="cividis",
    )


def prepare_patterns(
    labels: Sequence[Sequence[str]],
    scores,
    *,
    layers: Sequence[int] | None = None,
    title: str = "Head pattern labels",
    caption: str = STATS_CAPTION,
) -> MatrixData:
    """Pattern-label map: labels [L][H] (str) and the score of each label [L, H] -> `MatrixData`,
    coloured by score and with each head's label written in its cell."""
    arr = as_float_array(scores, name="scores", ndim=(2,))
    text = np.asarray(labels, dtype=object)
    if text.shape != arr.shape:
        raise ValueError(f"labels have shape {text.shape} but scores {arr.shape}: both must be [layers, heads]")
    return _layer_by_head(
        arr, layers, title=title, caption=caption, value_name="score",
        hover="{row} {col}: {text} ({value})", zmax=1.0, colorscale="Blues", cell_text=text,
    )


def prepare_layer_consistency(
    matrix,
    *,
    layers: Sequence[int] | None = None,
    value_name: str = "JS distance",
    title: str = "Layer consistency: Jensen–Shannon distance between layers (0 = same pattern)",
    caption: str = STATS_CAPTION,
) -> MatrixData:
    """Layer-by-layer consistency [L, L] -> `MatrixData`; e.g. `analysis.layer_consistency(...)[0]`,
    D[a, b] = sqrt(mean_i JSD(P_a[i], P_b[i])) of head-averaged maps, in [0, sqrt(ln 2)]."""
    arr = as_float_array(matrix, name="layer consistency", ndim=(2,))
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"layer consistency must be square [L, L], got {arr.shape}")
    names = tuple(f"L{i}" for i in _layer_ids(layers, arr.shape[0]))
    return MatrixData(
        values=arr, row_labels=names, col_labels=names, title=title, caption=caption,
        x_title="layer", y_title="layer", value_name=value_name, hover="{row} ~ {col}: {value}",
        zmin=0.0, colorscale="cividis",
    )


def prepare_head_distance(
    distance,
    *,
    order: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    num_heads: int | None = None,
    title: str = "Head distance (Jensen–Shannon), clustering order",
    caption: str = STATS_CAPTION,
) -> MatrixData:
    """Head-distance matrix [N, N] shown in clustering `order` -> `MatrixData`.

    Heads are named by `names`, or "L{l}H{h}" from `num_heads` (flat index = l * num_heads + h).
    D'[a, b] = D[order[a], order[b]].
    """
    arr = as_float_array(distance, name="head distance", ndim=(2,))
    n = arr.shape[0]
    if arr.shape != (n, n):
        raise ValueError(f"head distance must be square [N, N], got {arr.shape}")
    if names is None:
        if num_heads is None or num_heads < 1 or n % num_heads:
            raise ValueError(f"pass names=, or num_heads= dividing the {n} heads")
        names = head_names(n // num_heads, num_heads)
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise ValueError(f"{len(names)} names for {n} heads")
    perm = np.arange(n) if order is None else np.asarray([int(i) for i in order], dtype=np.int64)
    if sorted(perm.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}")
    shown = tuple(names[i] for i in perm)
    return MatrixData(
        values=arr[np.ix_(perm, perm)],  # [N, N] reordered
        row_labels=shown, col_labels=shown, title=title, caption=caption,
        x_title="head", y_title="head", value_name="JS distance", hover="{row} ~ {col}: {value}",
        zmin=0.0, colorscale="magma",
        row_index=perm, col_index=perm,
    )


def prepare_cross_input(
    mean,
    spread,
    *,
    statistic: str = "entropy",
    n_inputs: int | None = None,
    layers: Sequence[int] | None = None,
    title: str | None = None,
    caption: str = "A pattern seen on one input may not hold on others: check the spread.",
) -> BarsData:
    """Cross-input consistency: per head mean ± spread of one statistic over inputs -> `BarsData`.

    mean, spread: [L, H] (e.g. `analysis.cross_input_consistency(...).mean["entropy"]` / `.std[...]`).
    """
    m = as_float_array(mean, name="mean", ndim=(2,))
    s = as_float_array(spread, name="spread", ndim=(2,))
    if m.shape != s.shape:
        raise ValueError(f"mean {m.shape} and spread {s.shape} must have the same [layers, heads] shape")
    if title is None:
        across = f"across {n_inputs} inputs" if n_inputs else "across inputs"
        title = f"{statistic[:1].upper()}{statistic[1:]} per head {across} (mean ± spread)"
    return BarsData(
        categories=head_names(*m.shape, layers=layers),
        series={statistic: m.reshape(-1)},  # [L*H] layer-major
        errors={statistic: s.reshape(-1)},
        title=title, caption=caption, x_title="head", y_title=statistic,
    )


def prepare_deletion_curves(
    curves: Mapping[str, object],
    *,
    title: str = "Deletion curves: target score as top positions are removed",
    caption: str = "A faster drop means the ranking found positions the prediction depends on.",
) -> CurvesData:
    """Faithfulness deletion curves: {method: [K+1] score after deleting its top 0..K positions}
    -> `CurvesData` (x = number of positions deleted)."""
    if not curves:
        raise ValueError("no deletion curves to draw")
    series = {str(k): as_float_array(v, name=f"curve {k!r}", ndim=(1,)) for k, v in curves.items()}
    lengths = {v.shape[0] for v in series.values()}
    if len(lengths) != 1:
        raise ValueError(f"deletion curves must have the same length, got {sorted(lengths)}")
    return CurvesData(
        x=np.arange(lengths.pop()), series=series, title=title, caption=caption,
        x_title="positions deleted", y_title="target score",
    )


def prepare_importance(
    tokens: Sequence[str],
    importances: Mapping[str, object],
    *,
    normalize: bool = True,
    title: str = "Importance per position, by method",
    caption: str = CAVEAT,
) -> BarsData:
    """Compare importances per token: {method: [n]} -> grouped `BarsData`.

    normalize: each method divided by its max |value| (NaN-aware), so methods on different
    scales share one axis.
    """
    labels = tuple(str(t) for t in tokens)
    if not importances:
        raise ValueError("no importances to compare")
    series = {}
    for name, v in importances.items():
        arr = as_float_array(v, name=f"importance {name!r}", ndim=(1,))
        if arr.shape[0] != len(labels):
            raise ValueError(f"importance {name!r} has {arr.shape[0]} values for {len(labels)} tokens")
        if normalize:
            top = np.nanmax(np.abs(arr)) if np.isfinite(arr).any() else 0.0
            arr = arr / top if top > 0 else arr
        series[str(name)] = arr
    return BarsData(
        categories=labels, series=series, title=title, caption=caption, x_title="token",
        y_title="importance (÷ max)" if normalize else "importance",
    )
