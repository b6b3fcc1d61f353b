"""Experiments: a YAML grid of training and evaluation cells, run with resume into one results table.

A *training cell* is (size, method, strategy, k, seed); an *eval cell* is (training cell or the base model,
inference mode, benchmark). Every step (build a dataset, train a model, predict + score one eval cell) writes
into its own directory and finishes with a ``DONE.json`` marker written atomically last; a re-run skips
steps whose marker exists, so a half-done experiment only does what is missing, and a dataset or model is
made once for all the cells that use it. The stage calls sit in one adapter layer (:class:`Stages`), so the
runner can be driven by fakes.

Modules: :mod:`.cells` (cells and grids), :mod:`.config` (YAML parsing and validation, on
:mod:`.yaml_reader`'s typed reads),
:mod:`.runner` (steps, markers, resume, results table), :mod:`.stages` (adapters to build_data, train,
predict, evaluation), :mod:`.selection` (hyper-parameters per cell by validation loss), :mod:`.choice` (the
model to ship, across cells, by loss on a hold-out common to them)."""

from rait.experiment.cells import EvalCell, Grid, InferenceMode, ModelSelector, ModeSpec, TrainCell
from rait.experiment.config import (
    LANGS,
    PREDICT_DEFAULTS,
    EvaluationSpec,
    ExperimentConfig,
    ExperimentError,
    TrainingSpec,
    load_config,
)
from rait.experiment.runner import (
    DONE_NAME,
    EXECUTION_SETTINGS,
    RESULTS_JSON,
    RESULTS_MD,
    STARTED_NAME,
    Step,
    collect_results,
    plan,
    run_experiment,
    write_results,
)
from rait.experiment.stages import (
    Stages,
    default_stages,
    run_build,
    run_evaluate,
    run_predict,
    run_train,
)

__all__ = [
    "DONE_NAME",
    "EXECUTION_SETTINGS",
    "LANGS",
    "PREDICT_DEFAULTS",
    "RESULTS_JSON",
    "RESULTS_MD",
    "STARTED_NAME",
    "EvalCell",
    "EvaluationSpec",
    "ExperimentConfig",
    "ExperimentError",
    "Grid",
    "InferenceMode",
    "ModeSpec",
    "ModelSelector",
    "Stages",
    "Step",
    "TrainCell",
    "TrainingSpec",
    "collect_results",
    "default_stages",
    "load_config",
    "plan",
    "run_build",
    "run_evaluate",
    "run_experiment",
    "run_predict",
    "run_train",
    "write_results",
]
