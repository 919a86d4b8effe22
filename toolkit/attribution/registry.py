"""The registry of attribution methods: what each is called in inseq and how its scores are reduced.

A :class:`toolkit._core.registry.Registry` (``ATTRIBUTION_METHODS``) with ``register_attribution_method``
beside it, and the checks of a (method, backend, options) request that both backends share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._core.registry import Registry
from .._core.validation import InputError, InputTypeError, check_choice

__all__ = [
    "ATTRIBUTION_METHODS",
    "AttributionMethod",
    "BACKENDS",
    "FAST_METHODS",
    "check_backend",
    "check_kwargs",
    "check_method",
    "is_signed",
    "list_attribution_methods",
    "register_attribution_method",
]


BACKENDS: tuple[str, ...] = ("inseq", "fast")


@dataclass(frozen=True)
class AttributionMethod:
    """How one attribution method is run and reduced to one score per token.

    Attributes:
        inseq_name: the identifier in ``inseq.list_feature_attribution_methods()``.
        reduce: how inseq's per-token tensor becomes one number: ``"l2"`` (norm over the embedding
            dimension), ``"none"`` (already one number), ``"mean"`` (mean over layers/heads),
            ``"mean_kept_layers"`` (mean over the layers whose attention is not dropped).
        fast_kwargs: the keyword arguments ``backend="fast"`` accepts; None = no fast path.
            ``"sum"`` (sum over the embedding dimension: keeps the sign),
        fast_kwargs: the keyword arguments ``backend="fast"`` accepts; None = no fast path.
        stochastic: draws random numbers (seeded per example by ``attribute(seed=...)``).
        signed: whether a score can be negative and its sign means something. Signed: > 0 pushes
            the explained (predicted) label's probability up, < 0 pushes it down. Unsigned: a
            magnitude, >= 0, larger = more important, no direction. Displays read this field to
            pick their colours and legend (:mod:`toolkit.attribution.display`).
    """

    inseq_name: str
    reduce: str
    fast_kwargs: tuple[str, ...] | None = None
    stochastic: bool = False
    signed: bool = False


_REDUCTIONS = ("l2", "none", "mean", "mean_kept_layers", "sum")
# Reductions whose result is never negative: a method using one cannot be signed.
_UNSIGNED_REDUCTIONS = ("l2", "mean", "mean_kept_layers")
# What backend="fast" computes, by inseq name (the gradient of the explained label's probability).
FAST_METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients")


ATTRIBUTION_METHODS: Registry[AttributionMethod] = Registry("attribution method", {
    "saliency": AttributionMethod("saliency", "l2", fast_kwargs=()),
    "input_x_gradient": AttributionMethod("input_x_gradient", "l2", fast_kwargs=()),
    "integrated_gradients": AttributionMethod("integrated_gradients", "l2", fast_kwargs=("n_steps", "rule")),
    "lime": AttributionMethod("lime", "l2", stochastic=True),
    "occlusion": AttributionMethod("occlusion", "none"),  # inseq 0.7.1 returns |f(x) - f(x occluded)|
    "attention": AttributionMethod("attention", "mean"),
    "value_zeroing": AttributionMethod("value_zeroing", "mean_kept_layers"),
    # The same gradients summed over the embedding dimension instead of their L2 norm: signed.
    # sum_d e_id * df/de_id is the first-order change of f when token i's embedding is scaled
    # from 0 to e_i; for IG the per-token sums add up to f(x) - f(baseline) (completeness).
    "input_x_gradient_signed": AttributionMethod("input_x_gradient", "sum", fast_kwargs=(), signed=True),
    "integrated_gradients_signed": AttributionMethod(
        "integrated_gradients", "sum", fast_kwargs=("n_steps", "rule"), signed=True),
})


def list_attribution_methods(backend: str | None = None) -> list[str]:
    """Names of the registered methods (those with a fast path when ``backend="fast"``)."""
    if backend is not None:
        check_backend(backend)
    return sorted(n for n, m in ATTRIBUTION_METHODS.items() if backend != "fast" or m.fast_kwargs is not None)


def register_attribution_method(name: str, method: AttributionMethod, *,
                                replace: bool = False) -> AttributionMethod:
    """Add an inseq method under ``name`` (e.g. ``AttributionMethod("gradient_shap", "l2")``); returns ``method``.

    A name already registered is refused (InputError) unless ``replace=True``.
    """
    if not isinstance(method, AttributionMethod):
        raise InputTypeError(f"register_attribution_method needs an AttributionMethod, got {type(method).__name__}")
    if method.reduce not in _REDUCTIONS:
        raise InputError(f"unknown reduce {method.reduce!r}; expected one of {list(_REDUCTIONS)}")
    if method.signed and method.reduce in _UNSIGNED_REDUCTIONS:
        raise InputError(f"reduce {method.reduce!r} gives scores >= 0; a signed method needs 'sum' or 'none'")
    if method.fast_kwargs is not None and method.inseq_name not in FAST_METHODS:
        raise InputError(f"the fast backend implements only {', '.join(FAST_METHODS)}, not {method.inseq_name!r}")
    if method.fast_kwargs is not None and method.reduce not in ("l2", "sum"):
        raise InputError(f"the fast backend reduces by 'l2' or 'sum', not {method.reduce!r}")
    return ATTRIBUTION_METHODS.register(name, method, replace=replace)


def is_signed(method: str) -> bool:
    """Whether ``method``'s scores are signed (see :attr:`AttributionMethod.signed`); unknown names raise."""
    if method not in ATTRIBUTION_METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {list_attribution_methods()}")
    return ATTRIBUTION_METHODS.get(method).signed


def check_backend(backend: str) -> None:
    check_choice(backend, "backend", BACKENDS)


def check_method(method: str, backend: str) -> AttributionMethod:
    check_backend(backend)
    if method not in ATTRIBUTION_METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {list_attribution_methods()}")
    spec = ATTRIBUTION_METHODS.get(method)
    if backend == "fast" and spec.fast_kwargs is None:
        raise InputError(
            f"method {method!r} has no fast backend; backend='fast' supports {list_attribution_methods('fast')}, "
            "use backend='inseq' for the others"
        )
    return spec


def check_kwargs(method: str, given: dict[str, Any], accepted: Sequence[str], backend: str) -> None:
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise InputError(
            f"method {method!r} (backend {backend!r}) takes no argument {', '.join(map(repr, unknown))}; "
            f"it accepts {sorted(accepted)}"
        )
