"""Checkpoints and resume: the last readable checkpoint, moved-run state rebasing and the resume checks."""

from __future__ import annotations

import logging
from pathlib import Path

from rait.errors import DataError, RaitError
from rait.fileio import read_json, write_json
from rait.models import default_device
from rait.training.config import CONFIG_FILE, TrainConfig

logger = logging.getLogger("rait.train")  # the logger name of the module before the split

CHECKPOINTS = "checkpoints"


def _last_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint with the highest step whose ``trainer_state.json`` reads; a checkpoint cut short by a
    kill (a truncated state file) is skipped with a warning, so a resume falls back to the one before."""
    root = output_dir / CHECKPOINTS
    steps = sorted(
        (
            (int(p.name.split("-")[1]), p)
            for p in root.glob("checkpoint-*")
            if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()
        ),
        reverse=True,
    )
    for _, checkpoint in steps:
        try:
            state = read_json(checkpoint / "trainer_state.json")
        except DataError as exc:
            logger.warning("skipping checkpoint %s: %s", checkpoint.name, exc.reason)
            continue
        if isinstance(state, dict) and "global_step" in state:
            return checkpoint
        logger.warning("skipping checkpoint %s: its trainer_state.json has no global_step", checkpoint.name)
    return None


def _rebase_state(checkpoint: Path, output_dir: Path) -> dict:
    """The checkpoint's trainer state, with a best-checkpoint path recorded under another directory (the run
    was moved) pointed at the same checkpoint here, and the file rewritten if it changed."""
    state = read_json(checkpoint / "trainer_state.json")
    best = state.get("best_model_checkpoint")
    if best:
        here = output_dir / CHECKPOINTS / Path(best).name
        if Path(best) != here and here.is_dir():
            state["best_model_checkpoint"] = str(here)
            write_json(checkpoint / "trainer_state.json", state)
    return state


# The weights a finished run leaves in its output directory, by ``TrainConfig.finetuning``.
WEIGHTS_FILES = {"lora": "adapter_model.safetensors", "full": "model.safetensors"}

# What a run saved before ``precision`` existed trained with: fp32 on CPU, the GPU's best choice on CUDA.
_LEGACY_PRECISION = {"cpu": "fp32", "cuda": "auto"}


def _check_resume(config: TrainConfig, output_dir: Path) -> Path | None:
    """The checkpoint to resume from (None: fresh start); refuses to mix runs with different configs."""
    checkpoint = _last_checkpoint(output_dir)
    if checkpoint is None:
        if any((output_dir / name).exists() for name in WEIGHTS_FILES.values()):
            raise RaitError(f"{output_dir} already holds a trained model; use a new output dir")
        if config.resume:
            logger.info("no checkpoint in %s; starting from scratch", output_dir / CHECKPOINTS)
        return None
    if not config.resume:
        raise RaitError(
            f"{output_dir} already has checkpoints; pass --resume to continue or use a new output dir"
        )
    saved = read_json(output_dir / CONFIG_FILE) if (output_dir / CONFIG_FILE).exists() else {}
    saved.setdefault("precision", _LEGACY_PRECISION[default_device()])  # runs saved before the option
    saved.setdefault("finetuning", "lora")  # runs saved before full fine-tuning existed
    current = config.to_dict()
    ignored = ("resume", "output_dir")  # a moved run directory resumes
    changed = sorted(k for k in current if k not in ignored and saved.get(k) != current[k])
    if changed:
        raise RaitError(
            f"cannot resume {output_dir}: options differ from the saved run: {', '.join(changed)}"
        )
    return checkpoint


def _checkpoint_step(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.split("-")[1]) if checkpoint else None
