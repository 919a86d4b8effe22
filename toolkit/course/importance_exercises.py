"""Exercises of notebook 01 (layer importance): cosine and angular scores, choosing the k layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..pruning.importance import angular_distance, cosine_importance, select_layers
from .checking import Case, Exercise, exact_ints, scalar

__all__ = [
    "ANGLE_ATOL",
    "ANGULAR",
    "COSINE",
    "EXERCISES",
    "SELECT",
    "STREAM_ATOL",
]

# float32 streams: per-token cosines carry ~1e-7 relative rounding and a float32 mean over a few
# tokens adds ~1e-7; 1e-5 leaves 100x room and is far below any conceptual error (>= 1e-2 here).
STREAM_ATOL = 1e-5
# arccos(1 - e) ~ sqrt(2 e): float32 cosines (e ~ 1e-7) give angles off by up to ~1.6e-4 after / pi,
# which the toolkit's own float32 hooks share; the mistakes below move the score by >= 1e-2.
ANGLE_ATOL = 5e-4


def _streams(seed: int, tokens: int, d: int, update: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, d, generator=g)
    return x, x + update * torch.randn(tokens, d, generator=g)


def _stream_cases() -> list[Case]:
    x, y = _streams(0, 6, 16, 0.5)
    g = torch.Generator().manual_seed(1)
    # tokens of very different norms: the mean over tokens differs from the cosine of the flattened matrix
    xs = torch.randn(5, 8, generator=g) * torch.tensor([[0.1], [1.0], [10.0], [1.0], [0.5]])
    ys = xs + torch.randn(5, 8, generator=g)
    x1, y1 = _streams(2, 1, 32, 1.0)
    xo = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    yo = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, -1.0]])
    return [
        Case("typical: 6 tokens, d=16, y = x + a random update", (x, y)),
        Case("the sub-layer adds nothing (y = x)", (x, x.clone())),
        Case("y = 3 x (a rescaled stream: same direction)", (x, 3 * x)),
        Case("y = -x (opposite direction on every token)", (x, -x)),
        Case("orthogonal updates (cos = 0 on every token)", (xo, yo)),
        Case("tokens of very different norms (mean over tokens, not over the flattened matrix)", (xs, ys)),
        Case("one token", (x1, y1)),
    ]


COSINE = Exercise(
    name="cosine_importance",
    notebook="01_layer_importance",
    title="LLM-Drop importance: 1 - mean cosine between the stream before and after attention",
    difficulty=1,
    importance=3,
    minutes=5,
    signature='''def cosine_importance(x, y):
    """Importance of one attention sub-layer from the residual stream around it (LLM-Drop).

        importance = 1 - (1/T) sum_t cos(x_t, y_t),    cos(u, v) = u . v / (|u| |v|)

    He et al. 2024, "What Matters in Transformers? Not All Attention is Needed"
    (https://arxiv.org/abs/2406.15786). A low score means the sub-layer barely turns the stream.

    Args:
        x: float tensor [tokens, d], the residual stream entering the layer (X).
        y: float tensor [tokens, d], the stream after the attention sub-layer, X + Attn(LN(X)).

    Returns:
        The score as a Python float (0 when y = x, 2 when y = -x).
    """''',
    hint=(
        'The stub turns x and y into float64 numpy arrays. One cosine per token (row t of x with row t of y): '
        'row-wise dot products over the last axis divided by the product of the row norms (`np.linalg.norm` with '
        '`axis=-1`); average the T cosines, then subtract the mean from 1. Return a Python `float`.'
    ),
    cases=_stream_cases,
    reference=cosine_importance,
    compare=scalar(atol=STREAM_ATOL),
    compared_with="toolkit.pruning.importance.cosine_importance (the per-token cosine attention_importance uses)",
    tolerance=f"abs tolerance {STREAM_ATOL:g}: float32 rounding is ~1e-7",
)

ANGULAR = Exercise(
    name="angular_distance",
    notebook="01_layer_importance",
    title="Angular distance between the stream before and after attention (ShortGPT/Gromov style)",
    difficulty=1,
    importance=2,
    minutes=5,
    signature='''def angular_distance(x, y):
    """Mean angular distance between the residual stream before and after a sub-layer.

        angular = (1/T) sum_t arccos(cos(x_t, y_t)) / pi,   in [0, 1]

    Per token first, then the mean (Gromov et al. 2024, https://arxiv.org/abs/2403.17887), as
    toolkit.attention_importance(metric="angular") computes it. float32 rounding can give a cosine of
    1.0000001: clamp it to [-1, 1] before arccos.

    Args:
        x, y: float tensors [tokens, d], the stream before and after the attention sub-layer.

    Returns:
        A Python float (0 when y = x, 0.5 for orthogonal updates, 1 when y = -x).
    """''',
    hint=(
        "The stub turns x and y into float64 numpy arrays. Turn each token's cosine into an angle first "
        "(clip it to [-1, 1] with `np.clip` before `np.arccos`), divide by "
        'pi, then average over tokens. The arccos of the *average* cosine is a different number.'
    ),
    cases=_stream_cases,
    reference=angular_distance,
    compare=scalar(atol=ANGLE_ATOL),
    compared_with="toolkit.pruning.importance.angular_distance (the per-token angle attention_importance uses)",
    tolerance=(
        f"abs tolerance {ANGLE_ATOL:g}: arccos is steep near cos = 1, so a float32 rounding error e ~ 1e-7 of a "
        "cosine becomes an angle error of up to sqrt(2 e) / pi ~ 1.6e-4 (y = x gives ~6e-5, not 0)"
    ),
)


def _select_reference(scores: pd.Series, k: int) -> list[int]:
    return select_layers(scores, k)


def _select_cases() -> list[Case]:
    typical = pd.Series([0.31, 0.05, 0.22, 0.02, 0.40, 0.11, 0.09, 0.35], name="cosine")
    return [
        Case("typical: 8 layers, k=3 (the answer is in layer order, not score order)", (typical, 3)),
        Case("k=0: nothing to drop", (typical, 0)),
        Case("ties: equal scores go to the lower layer index first", (pd.Series([0.2, 0.1, 0.3, 0.1, 0.1, 0.2]), 2)),
        Case("every layer tied", (pd.Series([0.5, 0.5, 0.5, 0.5]), 3)),
        Case("NaN = an already dropped layer, never chosen", (pd.Series([0.3, np.nan, 0.1, np.nan, 0.2]), 3)),
        Case("one layer, k=1", (pd.Series([0.7]), 1)),
    ]


SELECT = Exercise(
    name="k_least_important",
    notebook="01_layer_importance",
    title="Pick the k least important attention layers (ties and NaN as toolkit.select_layers)",
    difficulty=1,
    importance=3,
    minutes=5,
    signature='''def k_least_important(scores, k):
    """The k layers with the lowest importance: the attention sub-layers to drop.

    Ties go to the lower layer index (a stable sort); NaN marks a layer already dropped and is
    never chosen. Same result as toolkit.select_layers(scores, k).

    Args:
        scores: pandas Series indexed by layer (as toolkit.attention_importance returns), NaN allowed.
        k: how many layers to choose, 0 <= k <= number of non-NaN scores.

    Returns:
        A list of k Python ints, in ascending layer order.
    """''',
    hint=(
        'Leave out the NaN layers; sort the others by score with a *stable* sort, so tied layers keep their '
        'index order; keep the first k; return them in layer order (not score order) as Python ints.'
    ),
    cases=_select_cases,
    reference=_select_reference,
    compare=exact_ints("a list of layer indices"),
    compared_with="toolkit.pruning.importance.select_layers",
    tolerance="exact (integers)",
)

EXERCISES = (COSINE, ANGULAR, SELECT)
