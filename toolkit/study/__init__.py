"""The study runner: models x datasets x pruning levels x layer selections x attribution methods.

Every cell (one model, dataset, selection metric and number k of dropped attention layers) scores
the test examples, fits a temperature on the validation examples, explains a subset of the test
examples with each attribution method and measures erasure faithfulness beside a random ranking
baseline. Each finished cell is appended to `<output_dir>/<config hash>/cells.jsonl` at once, so a
killed run resumes where it stopped and the final table is the same as an uninterrupted run's.

Modules, in dependency order: ``config`` (:class:`StudyConfig`) <- ``cells`` (the grid, one cell)
<- ``table`` (the tidy table) <- ``summary`` (the claims), ``audit`` (the per-cell audit CSV), ``plan``
(cost and power) <- ``run`` (:func:`run_study`); ``controls`` (a selection against its pooled
random-layer draws, from the records) needs ``decide`` and ``table``; ``sweep`` (stage 1 of the two-stage design: every k
on validation, k*, and the stage-2 configs) needs only ``config``. Which metrics the table holds,
which are claims and how they are shown comes
from the metric registry (:mod:`toolkit.metrics.registry`). Every public name is re-exported here.
"""

from .audit import CELL_KEYS, DEFAULT_PRIMARY, INPUT_COLUMNS, audit_table, cell_verdicts, recompute
from .cells import Cell, run_cell, study_cells, study_data, study_pairs, study_shots
from .controls import random_control
from .config import (CLAIM_FAMILIES, CORRECTIONS, PROFILES, STAND_INS, StudyConfig, bucket_labels, claim_metrics,
                     resolve_level)
from .plan import PILOT_ASSUMPTIONS, plan, planned_metrics, status
from .run import StudyIncomplete, check_study, model_depth, run_study
from .sweep import KSTAR_RULES, SweepConfig, k_star, run_sweep, stage2_configs, sweep_table
from .summary import SHOWN_BESIDE, ClaimColumns, Summary, measured_metrics, summary
from .table import faithfulness_by_length, load_results, record_frame, report_frames, tidy_table
from .verdicts import OUTCOMES, verdict_counts, verdicts

__all__ = [
    "CELL_KEYS",
    "CLAIM_FAMILIES",
    "CORRECTIONS",
    "DEFAULT_PRIMARY",
    "INPUT_COLUMNS",
    "KSTAR_RULES",
    "OUTCOMES",
    "PILOT_ASSUMPTIONS",
    "PROFILES",
    "SHOWN_BESIDE",
    "STAND_INS",
    "Cell",
    "ClaimColumns",
    "StudyConfig",
    "StudyIncomplete",
    "Summary",
    "SweepConfig",
    "audit_table",
    "bucket_labels",
    "cell_verdicts",
    "check_study",
    "claim_metrics",
    "faithfulness_by_length",
    "k_star",
    "load_results",
    "measured_metrics",
    "model_depth",
    "plan",
    "planned_metrics",
    "random_control",
    "record_frame",
    "recompute",
    "report_frames",
    "resolve_level",
    "run_cell",
    "run_study",
    "run_sweep",
    "stage2_configs",
    "status",
    "study_cells",
    "study_data",
    "study_pairs",
    "study_shots",
    "summary",
    "sweep_table",
    "tidy_table",
    "verdict_counts",
    "verdicts",
]
