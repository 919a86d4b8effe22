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
from .importance import IMPORTANCE_METRICS, attention_importance, choose_layers, select_layers
from .models import ADAPTERS, Adapter, adapter_for, cache_dir, decoder_layers, list_models, load_model, register_adapter
from .pruning import PrunedAttention, drop_attention, dropped_layers, n_parameters, prune_attention, save_pruned
from .scoring import Prompt, label_probs, predict, render_prompt, verbalizer_ids

__version__ = "0.1.0"

__all__ = [
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
    "get_task",
    "label_probs",
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
