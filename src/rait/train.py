"""LoRA instruction tuning of a causal LM on conversation files (transformers ``Trainer`` + peft).

Input: ShareGPT/UniNER-style conversation files (JSON list or JSONL; each conversation has
``conversations`` with ``from``/``value`` or ``messages`` with ``role``/``content``). Every conversation is
encoded with :func:`rait.chat.encode_for_training` (loss on assistant turns only), batched with dynamic
padding, optionally grouped by length. The output directory holds the adapter, the tokenizer, the exact
resolved config (``rait_train_config.json``, itself a valid ``--config`` file), a summary, the training log
(``train_log.jsonl``), a loss-curve PNG and resumable checkpoints (``checkpoints/checkpoint-<step>``).

Multi-GPU: run the same command under ``accelerate launch`` or ``torchrun``; ``batch_size`` stays the
effective batch (per-device batch x gradient accumulation x number of processes)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from rait.chat import IGNORE_INDEX, encode_for_training
from rait.errors import DataError, RaitError
from rait.fileio import (
    JsonlAppender,
    check_output_dir,
    read_json,
    read_jsonl,
    read_text,
    write_json,
    write_jsonl,
)
from rait.locks import output_lock
from rait.lora_dropout import use_int16_dropout
from rait.models import (
    DEFAULT_MODEL,
    TRAIN_CONFIG_FILE,
    default_device,
    load_model,
    load_tokenizer,
    resolve_model_path,
)
from rait.precision import PRECISIONS, resolve_precision
from rait.records import Conversation

# When saving an adapter peft looks the base model's config up (locally, then on the Hub) to see whether the
# vocabulary changed; rait never changes it, and with a model alias or offline the lookup fails harmlessly
# with one of these warnings after every checkpoint.
warnings.filterwarnings("ignore", message="Unable to fetch remote file", module="peft")
warnings.filterwarnings("ignore", message="Could not find a config file in", module="peft")

logger = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LENGTH_RULES = ("truncate", "drop")
CONFIG_FILE = TRAIN_CONFIG_FILE
SUMMARY_FILE = "train_summary.json"
LOG_FILE = "train_log.jsonl"
LOSS_PLOT = "loss_curve.png"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults follow the RA-IT paper (3 epochs, effective batch 8,
    learning rate 5e-5, cosine schedule, LoRA on every attention and MLP projection)."""

    data: list[str] = field(default_factory=list)  # conversation files (JSON list or JSONL)
    output_dir: str = ""
    model: str = DEFAULT_MODEL  # name, local directory, .gguf file or Hub id
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8  # effective batch: per_device_batch_size x gradient accumulation x processes
    per_device_batch_size: int = 2
    learning_rate: float = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.04
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    max_length: int = 2048  # tokens per conversation
    length_rule: str = "truncate"  # longer conversations: "truncate" or "drop" (counts are logged)
    group_by_length: bool = True  # batch conversations of similar length (less padding)
    seed: int = 42
    save_steps: int = 200  # checkpoint every N optimizer steps
    save_total_limit: int | None = 2  # checkpoints kept (None = all)
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto | fp32 | bf16 (rait.precision): bf16 where the hardware has it natively
    require_chat_template: bool = False  # False: a model without one gets the ChatML fallback (logged)
    system_prompt: str = "none"  # none | default (the chat template's own) | a text; inference reuses it
    validation_fraction: float = (
        0.0  # > 0: hold out this share of conversations (seeded), keep best by val loss
    )
    resume: bool = False  # continue from the last checkpoint in output_dir

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str | Path = "config") -> TrainConfig:
        """Build from a mapping; unknown keys and values of the wrong type raise :class:`DataError`."""
        if not isinstance(data, dict):
            raise DataError(source, "expected a mapping of training options")
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                raise DataError(source, f"unknown option; accepted: {', '.join(known)}", field=key)
            values[key] = _coerce(value, known[key].type, source, key)
        return cls(**values)

    def validate(self) -> None:
        """Check values before any work starts."""
        if not self.data:
            raise RaitError("no training data given")
        if not self.output_dir:
            raise RaitError("no output directory given")
        checks = [
            (self.length_rule in LENGTH_RULES, f"length_rule must be one of {', '.join(LENGTH_RULES)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.batch_size > 0 and self.per_device_batch_size > 0, "batch sizes must be positive"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.epochs > 0 or self.max_steps > 0, "epochs or max_steps must be positive"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (self.lora_r > 0 and self.lora_alpha > 0, "lora_r and lora_alpha must be positive"),
            (bool(self.lora_target_modules), "lora_target_modules is empty"),
            (self.max_length > 1, "max_length must be at least 2"),
            (self.save_steps > 0 and self.logging_steps > 0, "save_steps and logging_steps must be positive"),
            (0 <= self.validation_fraction < 1, "validation_fraction must be in [0, 1)"),
            (bool(self.system_prompt.strip()), "system_prompt is empty (use 'none' for no system turn)"),
        ]
        from transformers import SchedulerType

        schedulers = [t.value for t in SchedulerType]
        checks.append(
            (self.lr_scheduler in schedulers, f"lr_scheduler must be one of {', '.join(schedulers)}")
        )
        for ok, message in checks:
            if not ok:
                raise RaitError(f"invalid training config: {message}")

    def gradient_accumulation_steps(self, world_size: int = 1) -> int:
        per_step = self.per_device_batch_size * world_size
        if self.batch_size % per_step:
            raise RaitError(
                f"batch_size {self.batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} x {world_size} process(es)"
            )
        return self.batch_size // per_step


def _coerce(value, annotation: str, source, key: str):
    """Check/convert one option value against its dataclass annotation (given as a string)."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise DataError(source, "must not be null", field=key)
    base = annotation.replace("| None", "").strip()
    if base == "list[str]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataError(source, "expected a list of strings", field=key)
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise DataError(source, f"expected true or false, got {value!r}", field=key)
        return value
    if base in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise DataError(source, f"expected a number, got {value!r}", field=key)
        try:
            number = float(value)
        except ValueError:
            raise DataError(source, f"expected a number, got {value!r}", field=key) from None
        if base == "int":
            if not number.is_integer():
                raise DataError(source, f"expected an integer, got {value!r}", field=key)
            return int(number)
        return number
    if not isinstance(value, str):
        raise DataError(source, f"expected a string, got {value!r}", field=key)
    return value


def load_config_file(path: str | Path) -> dict:
    """Options from a YAML or JSON file (a mapping of :class:`TrainConfig` fields)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "config file does not exist")
    if path.suffix == ".json":
        data = read_json(path)
    else:
        try:
            data = yaml.safe_load(read_text(path))
        except yaml.YAMLError as exc:
            line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else None
            raise DataError(path, f"invalid YAML: {getattr(exc, 'problem', exc)}", line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping of training options")
    return data


def resolve_config(config_file: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults, then the config file's options, then ``overrides`` whose value is not None."""
    values = load_config_file(config_file) if config_file else {}
    TrainConfig.from_dict(values, source=config_file or "config")  # report file errors against the file
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(values, source=config_file or "options")
    config.validate()
    return config


# ----------------------------------------------------------------------------------------------------- data


_ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


def _conversation(obj, path: Path, line: int | None, prefix: str) -> Conversation:
    def error(message: str, key: str | None = None):
        return DataError(
            path, message, line=line, field=f"{prefix}{key}" if key else (prefix.rstrip(".") or None)
        )

    if not isinstance(obj, dict):
        raise error("expected a conversation object")
    if "conversations" in obj:
        key, role_key, text_key = "conversations", "from", "value"
    elif "messages" in obj:
        key, role_key, text_key = "messages", "role", "content"
    else:
        raise error(
            "missing 'conversations' (from/value turns) or 'messages' (role/content turns)", "conversations"
        )
    turns = obj[key]
    if not isinstance(turns, list) or not turns:
        raise error("expected a non-empty list of turns", key)
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise error("expected a turn object", where)
        role = turn.get(role_key)
        if role not in _ROLES:
            raise error(
                f"unknown or missing role {role!r}; expected one of {', '.join(_ROLES)}",
                f"{where}.{role_key}",
            )
        if not isinstance(turn.get(text_key), str):
            raise error("missing or not a string", f"{where}.{text_key}")
    conversation = Conversation.from_dict(obj)
    if not any(t.role == "assistant" for t in conversation.turns):
        raise error("no assistant turn to learn from", key)
    return conversation


def load_conversations(paths: Sequence[str | Path]) -> list[Conversation]:
    """Read and validate conversation files; any malformed conversation raises :class:`DataError`."""
    conversations: list[Conversation] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(path, "file does not exist")
        found: list[Conversation] = []
        if path.suffix == ".json":
            data = read_json(path)
            if isinstance(data, dict) and ("conversations" in data or "messages" in data):
                data = [data]
            if not isinstance(data, list):
                raise DataError(path, "expected a JSON list of conversations (or JSONL, one per line)")
            found = [_conversation(obj, path, None, f"[{i}].") for i, obj in enumerate(data)]
        else:
            found = [_conversation(obj, path, line, "") for line, obj in read_jsonl(path)]
        if not found:
            raise DataError(path, "no conversations in file")
        conversations += found
    return conversations


def split_validation(
    conversations: Sequence[Conversation], fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """(training, validation) conversations: a seeded random ``fraction`` (at least one) held out, both in
    input order; ``fraction`` 0 holds out nothing."""
    if fraction <= 0:
        return list(conversations), []
    n_val = max(1, round(fraction * len(conversations)))
    if n_val >= len(conversations):
        raise RaitError(
            f"validation_fraction {fraction} of {len(conversations)} conversations leaves none to train on"
        )
    held = set(random.Random(seed).sample(range(len(conversations)), n_val))
    train_part = [c for i, c in enumerate(conversations) if i not in held]
    return train_part, [c for i, c in enumerate(conversations) if i in held]


@dataclass
class EncodedData:
    """Tokenized training examples and what the length rule did."""

    examples: list[dict[str, list[int]]]
    n_conversations: int
    n_truncated: int = 0
    n_dropped_long: int = 0
    n_dropped_unlabelled: int = 0

    def stats(self) -> dict:
        return {
            "conversations": self.n_conversations,
            "examples": len(self.examples),
            "truncated": self.n_truncated,
            "dropped_too_long": self.n_dropped_long,
            "dropped_no_labels": self.n_dropped_unlabelled,
            "tokens": sum(len(e["input_ids"]) for e in self.examples),
            "label_tokens": sum(sum(x != IGNORE_INDEX for x in e["labels"]) for e in self.examples),
        }


def encode_conversations(
    tokenizer,
    conversations: Sequence[Conversation],
    max_length: int,
    length_rule: str = "truncate",
    system_prompt: str = "none",
) -> EncodedData:
    """Encode for training (after the ``system_prompt`` turn) and apply the length rule; a conversation with
    no assistant token left within ``max_length`` is dropped (it has nothing to learn). Every truncation and
    drop is counted."""
    data = EncodedData([], len(conversations))
    for conversation in conversations:
        encoded = encode_for_training(tokenizer, conversation.turns, system_prompt=system_prompt)
        if len(encoded["input_ids"]) > max_length:
            if length_rule == "drop":
                data.n_dropped_long += 1
                continue
            encoded = {k: v[:max_length] for k, v in encoded.items()}
            data.n_truncated += 1
        if all(x == IGNORE_INDEX for x in encoded["labels"]):
            data.n_dropped_unlabelled += 1
            continue
        data.examples.append(encoded)
    return data


@dataclass
class PaddingCollator:
    """Right-pads a batch to its longest example: ``input_ids`` with the pad id, ``labels`` with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Orders examples so that each batch holds conversations of similar length (transformers' grouping:
    shuffle, sort within mega-batches, longest batch first), with a per-epoch seed so that a resumed run
    sees exactly the order an uninterrupted run would (the Trainer calls ``set_epoch``)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _trainer_class(group_by_length: bool):
    from transformers import Trainer

    class RaitTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not group_by_length:
                return super()._get_train_sampler(train_dataset)
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return LengthGroupedSampler([len(e["input_ids"]) for e in dataset], group, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """The model's causal-LM loss, with the vocabulary projection computed only at the positions
            that predict a labelled token (assistant turns are a fraction of each conversation)."""
            labels = inputs["labels"]
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            features = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**features, logits_to_keep=keep)
            loss = torch.nn.functional.cross_entropy(
                outputs.logits.float(), labels[:, 1:][keep[:, :-1]], reduction="sum"
            )
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                loss = loss / num_items_in_batch  # the Trainer then skips its division by accumulation
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss / keep.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return RaitTrainer


# ------------------------------------------------------------------------------------------------ training


def _model_reference(model: str) -> str:
    """How the adapter names its base model: local paths absolute, names and Hub ids as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


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


def run_loss(log_path: Path) -> float | None:
    """The mean training loss over every step of a run, resumed or not, from its train_log.jsonl (each
    logged loss is the mean over the steps since the previous row; rows are forced at checkpoints and at
    the last step, so the log covers the whole run)."""
    total, previous = 0.0, 0
    for row in _log_rows(log_path):
        if "loss" in row:
            total += row["loss"] * (row["step"] - previous)
            previous = row["step"]
    return total / previous if previous else None


# What a run saved before ``precision`` existed trained with: fp32 on CPU, the GPU's best choice on CUDA.
_LEGACY_PRECISION = {"cpu": "fp32", "cuda": "auto"}


def _check_resume(config: TrainConfig, output_dir: Path) -> Path | None:
    """The checkpoint to resume from (None: fresh start); refuses to mix runs with different configs."""
    checkpoint = _last_checkpoint(output_dir)
    if checkpoint is None:
        if (output_dir / "adapter_model.safetensors").exists():
            raise RaitError(f"{output_dir} already holds a trained adapter; use a new output dir")
        if config.resume:
            logger.info("no checkpoint in %s; starting from scratch", output_dir / CHECKPOINTS)
        return None
    if not config.resume:
        raise RaitError(
            f"{output_dir} already has checkpoints; pass --resume to continue or use a new output dir"
        )
    saved = read_json(output_dir / CONFIG_FILE) if (output_dir / CONFIG_FILE).exists() else {}
    saved.setdefault("precision", _LEGACY_PRECISION[default_device()])  # runs saved before the option
    current = config.to_dict()
    ignored = ("resume", "output_dir")  # a moved run directory resumes
    changed = sorted(k for k in current if k not in ignored and saved.get(k) != current[k])
    if changed:
        raise RaitError(
            f"cannot resume {output_dir}: options differ from the saved run: {', '.join(changed)}"
        )
    return checkpoint


def _callbacks(log_path: Path, resume_step: int | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Appends every Trainer log row (loss, lr, grad norm, ...) to train_log.jsonl."""

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            rows = [
                r for r in _log_rows(log_path) if resume_step is not None and r.get("step", 0) <= resume_step
            ]
            write_jsonl(log_path, rows)  # a resumed run drops rows logged after its checkpoint
            self.appender = JsonlAppender(log_path)

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True  # the log then covers every step up to each checkpoint (run_loss)
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                self.appender.append({"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs})

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.appender.close()

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(
                    TextColumn("training"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.description}"),
                )
                self.progress.start()
                self.task = self.progress.add_task("", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "loss" in logs:
                self.progress.update(self.task, description=f"loss {logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress.stop()

    return [JsonlLog(), RichProgress()]


def _log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    JsonlAppender(path).close()  # drop a torn last line
    return [row for _, row in read_jsonl(path)]


def plot_loss(log_path: str | Path, output: str | Path) -> Path | None:
    """Training (and validation) loss against optimizer step, from a train_log.jsonl; None when nothing
    was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = _log_rows(Path(log_path))
    rows = [r for r in all_rows if "loss" in r]
    if not rows:
        return None
    evals = [r for r in all_rows if "eval_loss" in r]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    marker = "." if len(rows) < 50 else None
    axes.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=marker, label="training")
    if evals:
        axes.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], marker="o", label="validation")
        axes.legend()
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    output = Path(output)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def train(config: TrainConfig, callbacks: Sequence = ()) -> Path:
    """Train a LoRA adapter; returns the output directory. Bad input fails before any training step.

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
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    output_dir = Path(config.output_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = config.gradient_accumulation_steps(world_size)
    conversations, held_out = split_validation(
        load_conversations(config.data), config.validation_fraction, config.seed
    )
    resume_from = _check_resume(config, output_dir)
    finished = None
    if resume_from is not None:
        state = _rebase_state(resume_from, output_dir)
        if state["global_step"] >= state.get("max_steps", 0) > 0:
            if (output_dir / SUMMARY_FILE).is_file() and (output_dir / "adapter_model.safetensors").is_file():
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
    # Frozen base weights in bf16 under bf16 autocast (peft keeps the LoRA weights fp32); fp16 keeps fp32
    # weights under fp16 autocast.
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.bfloat16 if args.bf16 else torch.float32
        )
    except (OSError, ValueError) as exc:
        raise RaitError(f"cannot load model {config.model}: {str(exc).strip().splitlines()[0]}") from None
    model.config.use_cache = False
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
    model.peft_config["default"].base_model_name_or_path = _model_reference(config.model)
    use_int16_dropout(model)  # the same dropout with cheaper random numbers (rait.lora_dropout)
    if precision in ("bf16", "fp16"):  # autocast runs LoRA's matmuls in half precision: skip peft's fp32 copy
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    if config.gradient_checkpointing:
        model.enable_input_require_grads()

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
    return output_dir


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


def _checkpoint_step(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.split("-")[1]) if checkpoint else None


def merge_adapter(adapter: str | Path, output: str | Path, *, dtype: str | None = None) -> Path:
    """Merge a LoRA adapter into its base model and save the result (with the adapter's tokenizer) to
    ``output``, atomically. ``dtype`` (e.g. ``"bfloat16"``) defaults to fp32."""
    output = Path(output)
    if output.exists():
        raise RaitError(f"{output} already exists")
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise RaitError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    model, tokenizer = load_model(str(adapter), dtype=dtype or torch.float32, device="cpu", merge=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (Path(adapter) / CONFIG_FILE).is_file():  # the training settings inference reuses (system prompt)
            shutil.copy(Path(adapter) / CONFIG_FILE, tmp / CONFIG_FILE)
        tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return output
