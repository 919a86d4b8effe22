"""What does pruning attention layers do to an LLM's accuracy, faithfulness and calibration?

The public API, in pipeline order: load a model and data, score labels, rank and drop attention
layers, explain predictions, measure faithfulness and calibration, run a study.
"""

from .data import (
    SPLITS,
    Dataset,
    Example,
    Task,
    data_dir,
    dataset_from_records,
    demonstrations,
    get_task,
    list_datasets,
    load_dataset,
    register_dataset,
)
from . import calibration, efficiency, faithfulness, plots, stats, study
from .calibration import (
    TemperatureScaler,
    accuracy_coverage,
    aurc,
    brier,
    calibration_report,
    classwise_ece,
    compare_calibration,
    debiased_l2_ce,
    ece,
    nll,
    reliability_table,
    smooth_ece,
)
from .faithfulness import (
    FRACTIONS,
    ScoreMemo,
    aopc,
    aopc_bounds,
    clear_memo,
    comprehensiveness,
    decision_flip,
    erasure_curves,
    faithfulness_report,
    model_scorer,
    naopc,
    random_baseline,
    sufficiency,
)
from .importance import IMPORTANCE_METRICS, attention_importance, choose_layers, select_layers
from .adapters import ADAPTERS, Adapter, adapter_for, decoder_layers, register_adapter
from .models import cache_dir, list_models, load_model
from .export import export_zeroed
from .manifest import Manifest, build_manifest, manifest_diff, read_manifest, write_manifest
from .pruning import PrunedAttention, drop_attention, dropped_layers, n_parameters, prune_attention, save_pruned
from .plots import importance_profile, metric_vs_pruning, reliability_diagram
from .scoring import Prompt, label_logprobs, label_probs, predict, render_prompt, verbalizer_ids
from .stats import Interval, bootstrap_ci, mean_ci, paired_bootstrap
from .study import StudyConfig, run_study, summary

# Attribution names load on first use (inseq itself only when an inseq wrapper is built).
_LAZY = {
    "Attribution": "attribution",
    "attribute": "attribution",
    "attributions_frame": "attribution",
    "list_attribution_methods": "attribution",
    "show_attributions": "attribution",
    "split_words": "attribution",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "attribution":
        import importlib

        return importlib.import_module(".attribution", __name__)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "FRACTIONS",
    "Interval",
    "ScoreMemo",
    "StudyConfig",
    "TemperatureScaler",
    "accuracy_coverage",
    "aopc",
    "aopc_bounds",
    "aurc",
    "bootstrap_ci",
    "brier",
    "calibration_report",
    "clear_memo",
    "classwise_ece",
    "compare_calibration",
    "comprehensiveness",
    "debiased_l2_ce",
    "decision_flip",
    "ece",
    "erasure_curves",
    "faithfulness_report",
    "importance_profile",
    "mean_ci",
    "metric_vs_pruning",
    "model_scorer",
    "naopc",
    "nll",
    "paired_bootstrap",
    "random_baseline",
    "reliability_diagram",
    "reliability_table",
    "run_study",
    "smooth_ece",
    "sufficiency",
    "summary",
    *_LAZY,
    "ADAPTERS",
    "IMPORTANCE_METRICS",
    "SPLITS",
    "Adapter",
    "Dataset",
    "Example",
    "Prompt",
    "PrunedAttention",
    "Task",
    "adapter_for",
    "attention_importance",
    "cache_dir",
    "choose_layers",
    "data_dir",
    "dataset_from_records",
    "decoder_layers",
    "demonstrations",
    "drop_attention",
    "dropped_layers",
    "export_zeroed",
    "get_task",
    "label_logprobs",
    "Manifest",
    "build_manifest",
    "label_probs",
    "manifest_diff",
    "read_manifest",
    "write_manifest",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "n_parameters",
    "predict",
    "prune_attention",
    "register_adapter",
    "register_dataset",
    "render_prompt",
    "save_pruned",
    "select_layers",
    "verbalizer_ids",
]
