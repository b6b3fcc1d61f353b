"""CLI commands for the train stage: ``rait train`` (LoRA instruction tuning) and ``rait merge``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from rait.console import escape, make_console
from rait.precision import DEFAULT_PRECISION
from rait.records import DEFAULT_SEED
from rait.training import FINETUNING, LENGTH_RULES, merge_adapter, resolve_config, train

_DEFAULTS = "[default: the config file's, else the paper's]"


def _setup_logging() -> None:
    root = logging.getLogger("rait")
    if not root.handlers:
        root.addHandler(RichHandler(show_path=False, show_time=False, markup=False))
        root.setLevel(logging.INFO)


def train_command(
    data: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Conversation files (ShareGPT 'conversations' or 'messages'; JSON list or JSONL)."
        ),
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Adapter, logs and checkpoints go here.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML/JSON of training options (e.g. configs/train/default.yaml)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Base model: name, local dir, .gguf or Hub id [default: smollm2-135m]."
        ),
    ] = None,
    epochs: Annotated[float | None, typer.Option(help=f"Training epochs {_DEFAULTS}.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after N optimizer steps (overrides epochs).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Effective batch = per-device x accumulation x processes [8].")
    ] = None,
    per_device_batch_size: Annotated[int | None, typer.Option(help="Micro-batch per device [2].")] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", "--learning-rate", help="Peak LR [5e-5].")
    ] = None,
    lr_scheduler: Annotated[str | None, typer.Option(help="transformers scheduler name [cosine].")] = None,
    warmup_ratio: Annotated[
        float | None, typer.Option(help="Fraction of steps for linear warmup [0.04].")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay [0].")] = None,
    finetuning: Annotated[
        str | None,
        typer.Option(help=f"{' or '.join(FINETUNING)}: an adapter, or every weight (a bf16 model) [lora]."),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank [16].")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha [32].")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout [0.05].")] = None,
    lora_target_modules: Annotated[
        str | None, typer.Option(help="Comma-separated module names [q,k,v,o,gate,up,down projections].")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per conversation [2048].")] = None,
    length_rule: Annotated[
        str | None, typer.Option(help=f"Longer conversations: {' or '.join(LENGTH_RULES)} [truncate].")
    ] = None,
    group_by_length: Annotated[
        bool | None,
        typer.Option("--group-by-length/--no-group-by-length", help="Batch similar lengths [on]."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of LoRA init, data order and dropout [{DEFAULT_SEED}].")
    ] = None,
    save_steps: Annotated[int | None, typer.Option(help="Checkpoint every N optimizer steps [200].")] = None,
    save_total_limit: Annotated[int | None, typer.Option(help="Checkpoints kept [2].")] = None,
    logging_steps: Annotated[int | None, typer.Option(help="Log every N optimizer steps [10].")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="[off].")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help=f"auto (bf16 where the CPU/GPU computes it natively), fp32 or bf16 [{DEFAULT_PRECISION}]."
        ),
    ] = None,
    require_chat_template: Annotated[
        bool | None,
        typer.Option("--require-chat-template", help="Fail on a model without one instead of using ChatML."),
    ] = None,
    validation_fraction: Annotated[
        float | None,
        typer.Option(
            help="Hold out this share of conversations (seeded); keep the best checkpoint by "
            "validation loss [0: none]."
        ),
    ] = None,
    system_prompt: Annotated[
        str | None,
        typer.Option(
            help="System turn: none, default (the chat template's own) or a text; stored with the adapter "
            "so that inference uses the same [none]."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in the output dir.")
    ] = False,
) -> None:
    """LoRA-tune (or fully fine-tune) a causal LM on instruction conversations (loss on answers only)."""
    _setup_logging()
    cfg = resolve_config(
        config,
        data=[str(p) for p in data] if data else None,
        output_dir=str(output_dir) if output_dir else None,
        model=model,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        per_device_batch_size=per_device_batch_size,
        learning_rate=learning_rate,
        lr_scheduler=lr_scheduler,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        finetuning=finetuning,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_target_modules=lora_target_modules,
        max_length=max_length,
        length_rule=length_rule,
        group_by_length=group_by_length,
        seed=seed,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=logging_steps,
        gradient_checkpointing=gradient_checkpointing,
        precision=precision,
        require_chat_template=require_chat_template,
        validation_fraction=validation_fraction,
        system_prompt=system_prompt,
        resume=resume or None,
    )
    out = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        make_console().print(f"adapter written to {escape(out)}", highlight=False)


def merge_command(
    adapter: Annotated[Path, typer.Argument(help="LoRA adapter directory written by 'rait train'.")],
    output: Annotated[Path, typer.Argument(help="Directory for the merged model (must not exist).")],
    dtype: Annotated[
        str | None, typer.Option(help="Saved dtype: float32, bfloat16 or float16 [float32].")
    ] = None,
) -> None:
    """Merge a LoRA adapter into its base model and save a standalone model (with the tokenizer)."""
    _setup_logging()
    out = merge_adapter(adapter, output, dtype=dtype)
    make_console().print(f"merged model written to {escape(out)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
    app.command("train")(train_command)
    app.command("merge")(merge_command)
