"""What does pruning attention layers do to an LLM's accuracy, faithfulness and calibration?

The public API: 30 names, in pipeline order. Load a model and data, score labels, rank and drop
attention layers, explain predictions, measure faithfulness and calibration, run a study, draw it.
Every other name imports from its module (``toolkit.metrics.calibration.brier``,
``toolkit.metrics.faithfulness.naopc``, ``toolkit.models.adapters.register_adapter``, ...), which lists its
own names in ``__all__``.
"""

from . import decisions, study
from ._core.validation import InputError
from .data.task import Task
from .data.datasets import list_datasets, load_dataset, register_dataset
from .metrics import calibration, faithfulness
from .metrics.calibration import TemperatureScaler, calibration_report, compare_calibration, ece
from .metrics.faithfulness import faithfulness_report, model_faithfulness
from .models.loading import list_models, load_model
from .models.scoring import predict
from .pruning import efficiency
from .pruning.attention import drop_attention, load_pruned, n_parameters, prune_attention, save_pruned
from .pruning.export import export_zeroed
from .pruning.importance import attention_importance, choose_layers, select_layers
from .study import StudyConfig, run_study, summary
from .study.plots import metric_vs_pruning, reliability_diagram

# Attribution names load on first use (inseq itself only when an inseq wrapper is built).
_LAZY = {
    "attribute": "attribution",
    "list_attribution_methods": "attribution",
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
    # 1. load a model and data
    "load_model",
    "list_models",
    "load_dataset",
    "list_datasets",
    "Task",
    "register_dataset",
    # 2. score the labels
    "predict",
    # 3. rank attention layers
    "attention_importance",
    "select_layers",
    "choose_layers",
    # 4. drop them (reversibly, or for good and saved)
    "drop_attention",
    "prune_attention",
    "n_parameters",
    "save_pruned",
    "load_pruned",
    "export_zeroed",
    # 5. explain predictions
    "attribute",
    "list_attribution_methods",
    # 6. faithfulness of the explanations
    "model_faithfulness",
    "faithfulness_report",
    # 7. calibration of the probabilities
    "calibration_report",
    "compare_calibration",
    "ece",
    "TemperatureScaler",
    # 8. the study: every model x dataset x pruning level, with its claims
    "StudyConfig",
    "run_study",
    "summary",
    # 9. figures
    "metric_vs_pruning",
    "reliability_diagram",
    # a mistake the user can fix: a ValueError naming the bad value and what is allowed
    "InputError",
]
