"""The training run: :func:`train` (lock, data, model + LoRA, Trainer, outputs and summary) and the
validation summary it writes."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from rait.errors import RaitError
from rait.fileio import check_output_dir, read_json, write_json
from rait.locks import output_lock
from rait.lora_dropout import use_int16_dropout
from rait.model_card import write_model_card
from rait.models import SUMMARY_FILE, default_device, load_tokenizer, resolve_model_path
from rait.precision import resolve_precision
from rait.training.checkpoints import (
    CHECKPOINTS,
    WEIGHTS_FILES,
    _check_resume,
    _checkpoint_step,
    _rebase_state,
)
from rait.training.config import CONFIG_FILE, TrainConfig
from rait.training.data import EncodedData, encode_conversations, load_conversations, split_validation
from rait.training.log import LOG_FILE, LOSS_PLOT, _callbacks, plot_loss, run_loss
from rait.training.trainer import PaddingCollator, _trainer_class

logger = logging.getLogger("rait.train")  # the logger name of the module before the split


def _model_reference(model: str) -> str:
    """How the adapter names its base model: local paths absolute, names and Hub ids as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def train(config: TrainConfig, callbacks: Sequence = ()) -> Path:
    """Train a LoRA adapter (``finetuning="lora"``) or every weight (``"full"``: the output directory is then
    a bf16 model, loadable like a merged one); returns the output directory. Bad input fails before any
    training step.

    The output directory is locked (:func:`rait.locks.output_lock`) for the run: a second ``rait train``
    into it stops with the first one's pid. A finished run stays finished: resuming it trains nothing.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects."""
    config.validate()
    check_output_dir(config.output_dir)
    if os.environ.get("RANK", "0") != "0":  # other ranks of a multi-process run: rank 0 holds the lock
        return _train(config, callbacks)
    with output_lock(config.output_dir, directory=True, what="training directory"):
        return _train(config, callbacks)


def _train(config: TrainConfig, callbacks: Sequence) -> Path:
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    output_dir = Path(config.output_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = config.gradient_accumulation_steps(world_size)
    conversations, held_out = split_validation(
        load_conversations(config.data),
        config.validation_fraction,
        config.seed if config.split_seed is None else config.split_seed,
    )
    resume_from = _check_resume(config, output_dir)
    finished = None
    if resume_from is not None:
        state = _rebase_state(resume_from, output_dir)
        if state["global_step"] >= state.get("max_steps", 0) > 0:
            weights = output_dir / WEIGHTS_FILES[config.finetuning]
            if (output_dir / SUMMARY_FILE).is_file() and weights.is_file():
                logger.info(
                    "%s is a finished run (%d steps); nothing to do", output_dir, state["global_step"]
                )
                return output_dir
            finished = state  # killed while saving the final adapter: save it from the last checkpoint
    model_path = resolve_model_path(config.model)
    tokenizer = load_tokenizer(model_path, require_chat_template=config.require_chat_template)
    data = encode_conversations(
        tokenizer, conversations, config.max_length, config.length_rule, config.system_prompt
    )
    stats = data.stats()
    logger.info(
        "%d conversations -> %d training examples (%d truncated to %d tokens, %d dropped as longer, "
        "%d dropped with no assistant token within the limit)",
        stats["conversations"], stats["examples"], stats["truncated"], config.max_length,
        stats["dropped_too_long"], stats["dropped_no_labels"],
    )  # fmt: skip
    if not data.examples:
        raise RaitError("no training example left after applying the length rule")
    validation = encode_conversations(
        tokenizer, held_out, config.max_length, config.length_rule, config.system_prompt
    )
    if held_out and not validation.examples:
        raise RaitError("no validation example left after applying the length rule")

    device = default_device()
    precision = resolve_precision(config.precision, device)
    logger.info("precision %s (%s on %s)", precision, config.precision, device)
    args = TrainingArguments(
        output_dir=str(output_dir / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to="none",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        ddp_find_unused_parameters=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=device == "cpu",
        **_validation_args(config, bool(held_out)),
    )
    if args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / CONFIG_FILE, config.to_dict())

    set_seed(config.seed)
    model = _trainable_model(config, model_path, precision)

    trainer = _trainer_class(config.group_by_length)(
        model=model,
        args=args,
        train_dataset=data.examples,
        eval_dataset=validation.examples or None,
        data_collator=PaddingCollator(
            tokenizer.pad_token_id, pad_to_multiple_of=8 if device == "cuda" else None
        ),
        callbacks=[*_callbacks(output_dir / LOG_FILE, _checkpoint_step(resume_from)), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    started = time.time()
    if finished is None:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    else:
        from transformers import TrainerState

        logger.info("%s is at the last step; saving its adapter without training", resume_from.name)
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        best = trainer.state.best_model_checkpoint if args.load_best_model_at_end else None
        trainer._load_from_checkpoint(best if best and Path(best).is_dir() else str(resume_from))
    if config.finetuning == "full":  # fp32 master weights trained; saved in bf16 (half the size)
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            trainer.accelerator.unwrap_model(trainer.model).to(torch.bfloat16).save_pretrained(output_dir)
    else:
        trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(output_dir)
        plot_loss(output_dir / LOG_FILE, output_dir / LOSS_PLOT)
        write_json(
            output_dir / SUMMARY_FILE,
            {
                "model_path": model_path,
                "data": stats,
                "world_size": world_size,
                "gradient_accumulation_steps": accumulation,
                "optimizer_steps": trainer.state.global_step,
                "resumed_from": str(resume_from) if resume_from else None,
                "train_loss": run_loss(output_dir / LOG_FILE),
                "validation": _validation_summary(trainer.state, validation, output_dir)
                if held_out
                else None,
                "seconds": round(time.time() - started, 2),
                "device": device,
                "precision": precision,
                "dtype": str(model.dtype).removeprefix("torch."),
            },
        )
        write_model_card(output_dir)
    return output_dir


def _trainable_model(config: TrainConfig, model_path: str, precision: str):
    """The model to train: the base model with LoRA adapters (frozen base weights in bf16 under bf16
    autocast; peft keeps the LoRA weights fp32), or for full fine-tuning every weight trainable in fp32
    (under bf16/fp16 autocast when the precision says so)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    full = config.finetuning == "full"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.bfloat16 if precision == "bf16" and not full else torch.float32
        )
    except (OSError, ValueError) as exc:
        raise RaitError(f"cannot load model {config.model}: {str(exc).strip().splitlines()[0]}") from None
    model.config.use_cache = False
    if full:
        model.config.name_or_path = _model_reference(config.model)
        return model
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise RaitError(f"cannot apply LoRA to {config.model}: {str(exc).splitlines()[0]}") from None
    peft_config = model.peft_config["default"]
    peft_config.base_model_name_or_path = _model_reference(config.model)
    peft_config.target_modules = sorted(peft_config.target_modules)  # saved in a stable order, not a set's
    use_int16_dropout(model)  # the same dropout with cheaper random numbers (rait.lora_dropout)
    if precision in ("bf16", "fp16"):  # autocast runs LoRA's matmuls in half precision: skip peft's fp32 copy
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def _validation_args(config: TrainConfig, enabled: bool) -> dict:
    """TrainingArguments for the validation hold-out: evaluate at every checkpoint, keep the best by loss."""
    if not enabled:
        return {}
    return {
        "eval_strategy": "steps",
        "eval_steps": config.save_steps,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "label_names": ["labels"],
    }


def _validation_summary(state, validation: EncodedData, output_dir: Path) -> dict:
    """The validation losses of a finished run and the checkpoint the adapter was taken from."""
    losses = [
        {"step": row["step"], "eval_loss": row["eval_loss"]}
        for row in state.log_history
        if "eval_loss" in row
    ]
    best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
    return {
        "conversations": validation.n_conversations,
        "examples": len(validation.examples),
        "eval_losses": losses,
        "best_eval_loss": state.best_metric,
        "best_step": _checkpoint_step(best),
        "best_checkpoint": str(best.relative_to(output_dir)) if best else None,
    }


def read_validation(output_dir: str | Path) -> dict | None:
    """The validation summary of a finished run (``best_eval_loss``, ``best_step``, ``eval_losses``, ...),
    or None when it held nothing out."""
    path = Path(output_dir) / SUMMARY_FILE
    if not path.is_file():
        raise RaitError(f"{output_dir} holds no finished training run ({SUMMARY_FILE} is missing)")
    return read_json(path).get("validation")
