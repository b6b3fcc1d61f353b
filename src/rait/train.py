"""LoRA instruction tuning of a causal LM on conversation files: the import path of :mod:`rait.training`,
whose modules hold the code (config, data, trainer, log, checkpoints, loop, merge); every name stays
importable from here."""

from rait.training import *  # noqa: F403
from rait.training import __all__ as _PUBLIC
from rait.training.checkpoints import (
    _LEGACY_PRECISION,
    _check_resume,
    _checkpoint_step,
    _last_checkpoint,
    _rebase_state,
)
from rait.training.config import _coerce
from rait.training.data import _ROLES, _conversation
from rait.training.log import _callbacks, _log_rows
from rait.training.loop import (
    _model_reference,
    _train,
    _validation_args,
    _validation_summary,
    logger,
)
from rait.training.trainer import _trainer_class

__all__ = [
    *_PUBLIC,
    "_LEGACY_PRECISION",
    "_ROLES",
    "_callbacks",
    "_check_resume",
    "_checkpoint_step",
    "_coerce",
    "_conversation",
    "_last_checkpoint",
    "_log_rows",
    "_model_reference",
    "_rebase_state",
    "_train",
    "_trainer_class",
    "_validation_args",
    "_validation_summary",
    "logger",
]
