"""A study's configuration: what it measures (:class:`StudyConfig`), read from code or a file, and its hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .executors import EXECUTORS, Resources
from ..pruning.importance import SELECTION_STRATEGIES
from ..metrics.faithfulness.erasure import ErasureOptions
from ..metrics.faithfulness.metrics import missing_part
from ..metrics.registry import Metric, family_metric, get_metric, headline_metrics, metric_names
from .._core.validation import (
    InputError,
    InputTypeError,
    check_choice,
    check_int,
    check_probability,
    is_int,
    short_repr,
)

__all__ = ["CLAIM_FAMILIES", "CORRECTIONS", "ERASURE_KEYS", "PROFILES", "STAND_INS", "StudyConfig", "bucket_labels",
           "claim_metrics", "parse_config_text", "resolve_level"]

# One vocabulary with the notebooks' TOOLKIT_PROFILE (ci | classroom | full): `classroom` is the size a
# lab runs (notebook 05 runs this study under it); `quick` is its older name, kept as an alias.
PROFILES = ("full", "classroom", "quick", "ci")
CORRECTIONS = ("holm", "bh")
_Z975 = 1.959963984540054  # standard normal 97.5% quantile
_NOT_IN_DIGEST = frozenset({"output_dir", "margin", "alpha", "correction", "executor", "resources", "claims"})
ERASURE_KEYS = ("naopc", "naopc_max_words", "soft", "soft_samples", "soft_seed")
"""The study options that are :class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions` fields
(:attr:`StudyConfig.erasure`); a file keeps them flat, as before the options object existed."""
CLAIM_FAMILIES = ("calibration", "faithfulness")
"""The metric families whose registered metrics can be a study's claims (``StudyConfig.claims``)."""
STAND_INS: dict[str, str] = {"aopc_comprehensiveness": "naopc_comprehensiveness"}
"""Headline metrics that are a default claim only where the metric they stand in for was not measured:
AOPC stands in for NAOPC in a study without the bound search (``naopc=False``)."""
# Options added after the first studies ran: in the digest only when not at their default, so a
# config that does not set them keeps the hash (and the finished cells) it had before they existed.
_DIGEST_IF_SET = {"shots": 0, "skip_at_chance": False, "length_buckets": (), "soft": False, "soft_samples": 8,
                  "naopc_max_words": None, "soft_seed": None, "n_permutations": 0, "levels_by_selection": {},
                  "random_draws": 1}


@dataclass(frozen=True)
class StudyConfig:
    """What a study measures. Defaults describe the default study (<= 15 min on 2 CPU cores).

    Attributes:
        models: built-in names, local folders or hub ids.
        datasets: bundled or registered dataset names.
        levels: how many attention layers to drop: an int is k layers (0 = the unpruned reference);
            a float in (0, 1) is a fraction of the model's depth, k = round(f * n_layers) (at least 1),
            so one config spans models of different depth (see :func:`resolve_level`).
        selections: how the k layers are chosen: registered importance metrics (:mod:`toolkit.metrics.registry`).
        strategy: `one_shot` or `iterative` selection.
        methods: attribution methods for faithfulness.
        attribution_backend: `fast` (batched gradients) or `inseq`.
        n_eval: test examples per dataset for accuracy and calibration.
        n_validation: validation examples for temperature scaling.
        n_importance: train texts for similarity importance; labelled validation examples for loss_delta.
        n_faithfulness: test examples explained per cell: the first of the n_eval examples that have
            at most `max_words` words (NAOPC's bound search costs grow with the square of the length);
            with `length_buckets`, the first n_faithfulness of each bucket.
        max_words: longest text (in words) used for faithfulness (not used with `length_buckets`).
        shots: k-shot demonstrations in every prompt of the study (predictions, temperature fitting,
            loss_delta importance, attributions and erasure): an int k >= 1 for every model and
            dataset (0, the default: each dataset's task as registered, zero-shot for every bundled
            one), or ``"auto"``: per (model, dataset) the above-chance setting with the highest
            accuracy in ``data/bundled_accuracy.csv`` (tie: fewer shots), 0 for a pair without a row
            or without an above-chance row (see :func:`toolkit.study.study_shots`).
        skip_at_chance: leave out every (model, dataset) pair at which the model is at chance
            (:func:`toolkit.data.datasets.chance_models`); an error if no cell is left.
        length_buckets: ascending word-count upper bounds, e.g. ``(8, 16, 32)``: buckets <= 8,
            9-16 and 17-32 words. Given, each cell explains the first n_faithfulness test examples
            of each bucket (``max_words`` is then not used; longer examples are left out), every
            per-example faithfulness row carries its ``length_bucket`` label (``"<=8"``, ``"9-16"``,
            ...) and the report adds :func:`toolkit.study.faithfulness_by_length`. The claims stay
            pooled over all the sentences. Empty (default): no buckets.
        claims: the study's claims as registered calibration and faithfulness metric names (e.g.
            ``("ece", "smooth_ece", "naopc_comprehensiveness")``): the summary's column groups, the
            change tests counted in m, the plan's rows and the claims figure. The equivalence claim
            (accuracy, the ``tost`` metric) is always included, first. Empty (default): the
            registry's headline metrics, NAOPC or its stand-in AOPC (:func:`claim_metrics`).
        soft: also measure soft comprehensiveness and sufficiency (Bernoulli masks on the token
            embeddings, :mod:`toolkit.metrics.faithfulness.soft`), ``soft_samples`` mask draws each.
        soft_samples: Monte Carlo mask draws per sentence, ranking and soft metric.
        naopc_max_words: search the NAOPC bounds only of sentences of at most this many words
            (None: all); a longer sentence keeps AOPC, decision flip and the soft metrics, its NAOPC
            is NaN. The beam search costs ~1.5 n^2 forwards per n-word sentence (326 s for 4
            sentences of ~22 words with SmolLM2 on 2 cores), so long buckets need this.
        soft_seed: seed of the soft metrics' mask draws (with each text's crc32 and the draw index);
            None (default) is seed 0, as before the option existed.
        n_permutations: permuted baselines per attribution method (0: none; at least 3 when set):
            each draw permutes the method's own word scores over the words, so it erases (hard) or
            masks (soft) exactly as much as the method; seeded by ``seed`` and the text, so a
            pruned cell and its unpruned reference see the same permutations. Adds the methods
            ``permuted(<method>)`` and ``<method>_minus_permuted`` (the faithfulness claim:
            method minus its permuted baseline, per sentence) to the faithfulness rows.
        levels_by_selection: per selection, the levels it runs at instead of ``levels`` (e.g. the
            stage-2 studies of :func:`toolkit.study.sweep.stage2_configs`: each selection at its
            own k*); selections not named use ``levels``. Each listed level must be in ``levels``.
        random_draws: independent layer draws of the ``random`` selection at each of its levels
            (1: one, as before; draws 2.. are the selections ``random#2`` ...).
        n_random: random rankings per example for the faithfulness baseline.
        naopc: search each sentence's AOPC bounds for NAOPC (the dominant cost of faithfulness);
            False is the cheaper AOPC-only study: the change tests then use AOPC comprehensiveness.
        n_boot: bootstrap resamples for every CI.
        seed: seeds subsampling, random selections, random rankings and bootstraps.
        batch_size: examples per forward pass.
        output_dir: where results, figures and the report go.
        margin: equivalence margin for "accuracy holds": paired TOST of the accuracy difference.
        alpha: size of every test (the TOST, and the familywise / false-discovery level of the
            change tests).
        correction: multiplicity correction of the change tests: ``holm`` (familywise) or ``bh``
            (Benjamini-Hochberg, false discovery rate).
        executor: where cells run: ``local`` (this process), ``ray`` or ``slurm``.
        resources: what each worker task asks of the engine (:class:`toolkit.study.executors.Resources`).
        device, dtype, device_map: passed to :func:`toolkit.load_model` for every model;
            ``model_options`` overrides them per model (e.g. ``{"org/big": {"device_map": "auto"}}``).

    ``margin``, ``alpha``, ``correction``, ``claims``, ``executor``, ``resources`` and ``output_dir``
    change no cell, so they are not part of :meth:`digest`: rerunning with another margin or engine
    reuses (and resumes) the same cells. ``shots``, ``skip_at_chance``, ``length_buckets``,
    ``soft``, ``soft_samples`` and ``naopc_max_words`` enter it only when not at their default (so
    older configs keep their hash).
    """

    models: tuple[str, ...] = ("smollm2-135m",)
    datasets: tuple[str, ...] = ("uci_yelp",)
    levels: tuple[int | float, ...] = (0, 1, 2, 4, 6)
    selections: tuple[str, ...] = ("cosine",)
    strategy: str = "one_shot"
    methods: tuple[str, ...] = ("saliency", "input_x_gradient")
    attribution_backend: str = "fast"
    n_eval: int = 500
    n_validation: int = 50
    n_importance: int = 16
    n_faithfulness: int = 80
    max_words: int = 8
    n_random: int = 2
    naopc: bool = True
    shots: int | str = 0
    skip_at_chance: bool = False
    length_buckets: tuple[int, ...] = ()
    claims: tuple[str, ...] = ()
    soft: bool = False
    soft_samples: int = 8
    naopc_max_words: int | None = None
    soft_seed: int | None = None
    n_permutations: int = 0
    levels_by_selection: Mapping[str, tuple[int | float, ...]] = field(default_factory=dict)
    random_draws: int = 1
    n_boot: int = 500
    seed: int = 0
    batch_size: int = 16
    output_dir: str = "results"
    margin: float = 0.05
    alpha: float = 0.05
    correction: str = "holm"
    executor: str = "local"
    resources: Resources = Resources()
    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("models", "datasets", "levels", "selections", "methods"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float, os.PathLike)) or not isinstance(value, Iterable):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise InputError(f"StudyConfig.{name} is empty; give at least one")
        self._check_names()
        for s in self.selections:
            family_metric(s, "importance", "selection")
        check_choice(self.strategy, "strategy", SELECTION_STRATEGIES)
        if self.attribution_backend not in ("fast", "inseq"):
            raise InputError(f"unknown attribution_backend {self.attribution_backend!r}; expected 'fast' or 'inseq'")
        for k in self.levels:
            if isinstance(k, bool) or not isinstance(k, (int, float)) or (isinstance(k, int) and k < 0) or (
                isinstance(k, float) and not 0.0 < k < 1.0
            ):
                raise InputError(
                    f"levels must be integers k >= 0 (layers to drop) or fractions of the depth in (0, 1), got {k!r}"
                )
        if len(set(self.levels)) != len(self.levels):
            raise InputError(f"levels has duplicates: {list(self.levels)}")
        if all(k == 0 for k in self.levels):
            raise InputError(
                f"StudyConfig.levels={list(self.levels)} has no pruned level: a study compares pruned models with "
                "the unpruned one (level 0); add a level k >= 1 (layers to drop) or a fraction of the depth in (0, 1)"
            )
        for name in ("n_eval", "n_validation", "n_importance", "n_faithfulness", "n_boot", "batch_size", "max_words"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"StudyConfig.{name}", 1))
        if self.n_faithfulness > self.n_eval:
            raise InputError(f"n_faithfulness ({self.n_faithfulness}) cannot exceed n_eval ({self.n_eval})")
        object.__setattr__(self, "soft_samples", check_int(self.soft_samples, "StudyConfig.soft_samples", 1))
        if self.naopc_max_words is not None:
            object.__setattr__(self, "naopc_max_words",
                               check_int(self.naopc_max_words, "StudyConfig.naopc_max_words", 1))
        for name in ("naopc", "skip_at_chance", "soft"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"StudyConfig.{name}={getattr(self, name)!r}; expected true or false")
        self._check_shots_and_buckets()
        self._check_two_stage()
        self._check_claims()
        for name in ("margin", "alpha"):
            object.__setattr__(self, name, check_probability(getattr(self, name), f"StudyConfig.{name}"))
        check_choice(self.correction, "correction", CORRECTIONS)
        check_choice(self.executor, "executor", EXECUTORS)
        if isinstance(self.resources, Mapping):
            fields = sorted(f.name for f in dataclasses.fields(Resources))
            bad = sorted(map(str, set(self.resources) - set(fields)))
            if bad:
                raise InputError(f"StudyConfig.resources has unknown field(s) {bad}; allowed: {fields}")
            object.__setattr__(self, "resources", Resources(**self.resources))
        if not isinstance(self.resources, Resources):
            raise InputError(f"StudyConfig.resources={self.resources!r}; expected a mapping of Resources fields")
        if not isinstance(self.model_options, Mapping):
            raise InputError(f"StudyConfig.model_options={self.model_options!r}; expected model -> options mapping")
        allowed = {"device", "dtype", "device_map", "revision"}
        for model, options in self.model_options.items():
            if model not in self.models:
                raise InputError(f"model_options names {model!r}, which is not in models {list(self.models)}")
            if not isinstance(options, Mapping):
                raise InputError(f"model_options[{model!r}]={short_repr(options)}; expected a mapping of load options "
                                 f"({sorted(allowed)})")
            bad = sorted(set(options) - allowed)
            if bad:
                raise InputError(f"model_options[{model!r}] has unknown option(s) {bad}; allowed: {sorted(allowed)}")

    def _check_names(self) -> None:
        """Models and datasets are names (a path-like model becomes its str); seed, output_dir and the
        load options have the types the runner needs (a str seed would be repeated, not added)."""
        for name, what in (("models", "a model name, folder or hub id"), ("datasets", "a dataset name")):
            values = tuple(os.fspath(v) if isinstance(v, os.PathLike) else v for v in getattr(self, name))
            object.__setattr__(self, name, values)
            for i, v in enumerate(values):
                if not isinstance(v, str) or not v.strip():
                    raise InputError(f"StudyConfig.{name}[{i}] is {short_repr(v)}; expected {what} (a non-empty str)")
        for i, v in enumerate(self.selections + self.methods):
            if not isinstance(v, str):
                kind = "selections" if i < len(self.selections) else "methods"
                raise InputError(f"StudyConfig.{kind} holds {short_repr(v)} ({type(v).__name__}); expected names (str)")
        if not is_int(self.seed):
            raise InputError(f"StudyConfig.seed={self.seed!r} is invalid; expected an integer")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "n_random", check_int(self.n_random, "StudyConfig.n_random", 0))
        if isinstance(self.output_dir, os.PathLike):
            object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise InputError(f"StudyConfig.output_dir={self.output_dir!r}; expected a folder path (str)")
        for name in ("device", "dtype", "device_map"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"StudyConfig.{name}={short_repr(value)}; expected a str or None")

    def _check_shots_and_buckets(self) -> None:
        if self.shots != "auto":
            if not is_int(self.shots) or self.shots < 0:
                raise InputError(f"StudyConfig.shots={short_repr(self.shots)}; expected an integer >= 0 (demonstrations "
                                 "per prompt) or 'auto' (per model and dataset, from data/bundled_accuracy.csv)")
            object.__setattr__(self, "shots", int(self.shots))
        buckets = self.length_buckets
        if is_int(buckets) or not isinstance(buckets, Iterable) or isinstance(buckets, str):
            buckets = (buckets,)
        buckets = tuple(buckets)
        if any(not is_int(b) or b < 1 for b in buckets) or any(a >= b for a, b in zip(buckets, buckets[1:])):
            raise InputError(f"StudyConfig.length_buckets={short_repr(list(buckets))}; expected ascending word counts "
                             ">= 1 (the buckets' upper bounds), e.g. [8, 16, 32], or [] for no buckets")
        object.__setattr__(self, "length_buckets", tuple(int(b) for b in buckets))

    def _check_two_stage(self) -> None:
        """soft_seed, n_permutations, levels_by_selection and random_draws (issue 28's options)."""
        if self.soft_seed is not None:
            object.__setattr__(self, "soft_seed", check_int(self.soft_seed, "StudyConfig.soft_seed", 0))
        n_perm = check_int(self.n_permutations, "StudyConfig.n_permutations", 0)
        if 0 < n_perm < 3:
            raise InputError(f"StudyConfig.n_permutations={n_perm}; expected 0 (none) or at least 3 permutations")
        object.__setattr__(self, "n_permutations", n_perm)
        object.__setattr__(self, "random_draws", check_int(self.random_draws, "StudyConfig.random_draws", 1))
        if not isinstance(self.levels_by_selection, Mapping):
            raise InputError(f"StudyConfig.levels_by_selection={short_repr(self.levels_by_selection)}; expected "
                             "selection -> levels")
        by_sel = {}
        for sel, levels in self.levels_by_selection.items():
            if sel not in self.selections:
                raise InputError(f"levels_by_selection names {sel!r}, which is not in selections {list(self.selections)}")
            levels = tuple(levels) if isinstance(levels, Iterable) and not isinstance(levels, str) else (levels,)
            bad = [k for k in levels if k not in self.levels or k == 0]
            if bad or not levels:
                raise InputError(f"levels_by_selection[{sel!r}]={short_repr(list(levels))}; expected pruned levels "
                                 f"of StudyConfig.levels {list(self.levels)}")
            by_sel[str(sel)] = levels
        object.__setattr__(self, "levels_by_selection", by_sel)

    def selection_levels(self, selection: str) -> tuple[int | float, ...]:
        """The pruned levels ``selection`` runs at (``levels_by_selection``, else ``levels``; no 0)."""
        return tuple(k for k in self.levels_by_selection.get(selection, self.levels) if k != 0)

    def _check_claims(self) -> None:
        """Each claim is a registered calibration or faithfulness metric with a test, measured by this study."""
        claims = self.claims
        if isinstance(claims, str) or not isinstance(claims, Iterable):
            claims = (claims,)
        claims = tuple(claims)
        for metric in claim_metrics(claims, what="StudyConfig.claims") if claims else ():
            part = missing_part(metric, self.erasure)
            if part is not None:
                raise InputError(f"StudyConfig.claims holds {metric.name!r}, which needs {part.what}; a study with "
                                 f"{part.switch}=false does not measure it (set {part.switch}: true, or drop the claim)")
        object.__setattr__(self, "claims", claims)

    @property
    def erasure(self) -> ErasureOptions:
        """The erasure engine's options of every cell, passed whole to
        :func:`~toolkit.metrics.faithfulness.model_faithfulness`: the config's flat keys
        (:data:`ERASURE_KEYS`: ``naopc``, ``naopc_max_words``, ``soft``, ``soft_samples``, ``soft_seed``)
        as :class:`~toolkit.metrics.faithfulness.erasure.ErasureOptions` fields (a None key: the field's default)."""
        return ErasureOptions(**{k: getattr(self, k) for k in ERASURE_KEYS if getattr(self, k) is not None})

    def load_options(self, model: str) -> dict[str, Any]:
        """Keyword arguments of :func:`toolkit.load_model` for ``model``."""
        base = {k: getattr(self, k) for k in ("device", "dtype", "device_map") if getattr(self, k) is not None}
        return {**base, **dict(self.model_options.get(model, {}))}
    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model_options"] = {k: dict(v) for k, v in self.model_options.items()}
        data["levels_by_selection"] = {k: list(v) for k, v in self.levels_by_selection.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        if not isinstance(data, Mapping):
            raise InputTypeError(f"a study config is a mapping of StudyConfig fields, got a {type(data).__name__} "
                                 f"({short_repr(data)})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise InputError(f"unknown study option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_overrides(self, **changes: Any) -> StudyConfig:
        """A copy with the given fields changed (None values are ignored: "not given")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> StudyConfig:
        """Read a config from JSON, YAML or TOML (by file extension).

        Raises:
            InputError (a ValueError, one line each): another extension; a missing or unreadable
                file; text that does not parse (the file, line and the parser's reason); an empty
                file or one without settings (it would silently be the full default study); a top
                level that is not a mapping; unknown or invalid fields.
        """
        path = Path(path)
        where = f"config file {str(path)!r}"
        if path.suffix not in _CONFIG_SUFFIXES:
            raise InputError(f"{where} must end in .json, .yaml, .yml or .toml")
        if not path.is_file():
            raise InputError(f"{where} {'is a folder' if path.is_dir() else 'does not exist'}; expected a "
                             f"{'/'.join(_CONFIG_SUFFIXES)} file of StudyConfig fields")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{where} cannot be read: {err}") from None
        data = parse_config_text(text, path.suffix, where)
        if data is None or (isinstance(data, Mapping) and not data):
            raise InputError(
                f"{where} is empty (no settings), which would run the full default study; give the fields to set "
                "(e.g. `levels: [0, 2, 4]`), or use StudyConfig() / leave out --config for the default study"
            )
        if not isinstance(data, Mapping):
            raise InputError(f"{where} holds {short_repr(data)} ({type(data).__name__}) at the top level; expected "
                             "a mapping of StudyConfig fields, e.g. `levels: [0, 2, 4]`")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None

    @classmethod
    def profile(cls, name: str = "full", **overrides: Any) -> StudyConfig:
        """The default study (`full`), a `classroom` one (alias `quick`) for a first look, or the tiny `ci` one."""
        if name not in PROFILES:
            raise InputError(f"unknown profile {name!r}; expected one of {list(PROFILES)}")
        name = "quick" if name == "classroom" else name
        sizes = {
            "full": {},
            "quick": dict(levels=(0, 2, 8), selections=("cosine", "random"), n_eval=60, n_validation=30,
                          n_importance=8, n_faithfulness=4, n_random=2, n_boot=200, max_words=10),
            "ci": dict(levels=(0, 2, 6), selections=("cosine", "random"), methods=("saliency",), n_eval=16,
                       n_validation=12, n_importance=4, n_faithfulness=2, n_random=1, n_boot=50, max_words=8),
        }[name]
        return cls(**{**sizes, **overrides})

    def digest(self) -> str:
        """Content hash of everything that changes a cell (not where or how it runs, nor the decisions).

        Device options enter only when set, so configs from before they existed keep their hash.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_DIGEST}
        for name in ("device", "dtype", "device_map", "model_options"):
            if not data[name]:
                del data[name]
        if data["naopc"]:  # the default, as before the option existed
            del data["naopc"]
        for name, default in _DIGEST_IF_SET.items():
            if data[name] == default:
                del data[name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.digest()


_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml")


def parse_config_text(text: str, suffix: str, where: str) -> Any:
    """The parsed text of a config file (``suffix``: .json, .toml, .yaml or .yml); a syntax error becomes one
    InputError line naming the file (``where``) and line. Shared by every config file the toolkit reads."""
    if not text.strip():
        return None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{where} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{where} is not valid TOML: {' '.join(str(err).split())}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{where} is not valid YAML: {problem}{at}") from None


def claim_metrics(claims: Sequence[str] = (), *, measured: Collection[str] | None = None,
                  what: str = "claims") -> tuple[Metric, ...]:
    """The metrics a study states claims about: the equivalence claim, then the calibration and the
    faithfulness change claims.

    Args:
        claims: registered calibration or faithfulness metric names (``StudyConfig.claims``). The
            equivalence claim (the ``tost`` metric, accuracy) is always included, first; the others
            keep their order within each family. Empty: the registry's headline metrics
            (:func:`toolkit.metrics.registry.headline_metrics`) among ``measured``, less each
            stand-in (:data:`STAND_INS`) whose metric was measured: NAOPC, or AOPC without the bound search.
        measured: the metric names a study table holds (None: not checked).
        what: how an error names ``claims``.

    Raises:
        InputError: a name that is not a registered calibration or faithfulness metric with a test
            (the message lists the allowed names), a duplicate, or a claim not ``measured``.
    """
    if not claims:
        have = set(metric_names()) if measured is None else set(measured)
        return tuple(m for family in CLAIM_FAMILIES for m in headline_metrics(family, measured=measured)
                     if STAND_INS.get(m.name) not in have)
    allowed = [n for family in CLAIM_FAMILIES for n in metric_names(family) if get_metric(n).test is not None]
    for name in claims:
        if not isinstance(name, str) or name not in allowed:
            kind = f"family {get_metric(name).family}" if isinstance(name, str) and name in metric_names() else (
                "not a registered metric")
            raise InputError(f"{what} holds {short_repr(name)} ({kind}); expected registered calibration or "
                             f"faithfulness metrics: {allowed}")
    if len(set(claims)) != len(claims):
        raise InputError(f"{what} has duplicates: {list(claims)}")
    if measured is not None:
        missing = [n for n in claims if n not in measured]
        if missing:
            raise InputError(f"{what} {missing} are not measured in this table; measured: {sorted(measured)}")
    chosen = [get_metric(n) for n in claims]
    equivalence = headline_metrics("calibration", measured=measured, test="noninferiority")[:1]
    return (tuple(equivalence) + tuple(m for m in chosen if m.family == "calibration" and m.test != "noninferiority")
            + tuple(m for m in chosen if m.family == "faithfulness"))


def bucket_labels(bounds: Iterable[int]) -> tuple[str, ...]:
    """The labels of length buckets with these ascending upper bounds: (8, 16, 32) -> ("<=8", "9-16", "17-32")."""
    bounds = tuple(bounds)
    return tuple(f"<={b}" if i == 0 else f"{bounds[i - 1] + 1}-{b}" for i, b in enumerate(bounds))


def resolve_level(level: int | float, n_layers: int) -> int:
    """The number k of attention layers a study level drops in a model of ``n_layers`` layers.

    An int is k itself; a fraction f in (0, 1) gives k = floor(f * n_layers + 1/2), at least 1
    (0.1 of 30 layers is 3, of 18 layers 2; 0.33 of 30 is 10, of 18 is 6).

    Raises:
        InputError: k larger than ``n_layers``.
    """
    k = level if isinstance(level, int) else max(1, int(np.floor(level * n_layers + 0.5)))
    if k > n_layers:
        raise InputError(f"level {level!r} asks for {k} layers, but the model has {n_layers}")
    return k
