"""LoRA instruction tuning of a causal LM on conversation files (transformers ``Trainer`` + peft).

Input: ShareGPT/UniNER-style conversation files (JSON list or JSONL; each conversation has
``conversations`` with ``from``/``value`` or ``messages`` with ``role``/``content``). Every conversation is
encoded with :func:`rait.chat.encode_for_training` (loss on assistant turns only), batched with dynamic
padding, optionally grouped by length. The output directory holds the adapter, the tokenizer, the exact
resolved config (``rait_train_config.json``, itself a valid ``--config`` file), a summary, the training log
(``train_log.jsonl``), a loss-curve PNG and resumable checkpoints (``checkpoints/checkpoint-<step>``).

Multi-GPU: run the same command under ``accelerate launch`` or ``torchrun``; ``batch_size`` stays the
effective batch (per-device batch x gradient accumulation x number of processes).

Modules: :mod:`.config` (:class:`TrainConfig`, config files), :mod:`.data` (conversation files, validation
hold-out, encoding with the length rule), :mod:`.trainer` (collation, length-grouped sampler, the Trainer
subclass), :mod:`.log` (callbacks, ``train_log.jsonl``, loss plot), :mod:`.checkpoints` (resume),
:mod:`.loop` (:func:`train`) and :mod:`.merge` (:func:`merge_adapter`)."""

import warnings

# When saving an adapter peft looks the base model's config up (locally, then on the Hub) to see whether the
# vocabulary changed; rait never changes it, and with a model alias or offline the lookup fails harmlessly
# with one of these warnings after every checkpoint.
warnings.filterwarnings("ignore", message="Unable to fetch remote file", module="peft")
warnings.filterwarnings("ignore", message="Could not find a config file in", module="peft")

from rait.training.checkpoints import CHECKPOINTS  # noqa: E402
from rait.training.config import (  # noqa: E402
    CONFIG_FILE,
    FINETUNING,
    LENGTH_RULES,
    LORA_TARGETS,
    TrainConfig,
    load_config_file,
    resolve_config,
)
from rait.training.data import (  # noqa: E402
    EncodedData,
    encode_conversations,
    load_conversations,
    split_validation,
)
from rait.training.log import LOG_FILE, LOSS_PLOT, plot_loss, run_loss  # noqa: E402
from rait.training.loop import SUMMARY_FILE, read_validation, train  # noqa: E402
from rait.training.merge import merge_adapter  # noqa: E402
from rait.training.trainer import LengthGroupedSampler, PaddingCollator  # noqa: E402

__all__ = [
    "CHECKPOINTS",
    "CONFIG_FILE",
    "FINETUNING",
    "LENGTH_RULES",
    "LOG_FILE",
    "LORA_TARGETS",
    "LOSS_PLOT",
    "SUMMARY_FILE",
    "EncodedData",
    "LengthGroupedSampler",
    "PaddingCollator",
    "TrainConfig",
    "encode_conversations",
    "load_config_file",
    "load_conversations",
    "merge_adapter",
    "plot_loss",
    "read_validation",
    "resolve_config",
    "run_loss",
    "split_validation",
    "train",
]
