"""The training options: :class:`TrainConfig` (defaults, type checks, validation) and config files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rait.errors import DataError, RaitError
from rait.fileio import read_json, read_text
from rait.models import DEFAULT_MODEL, TRAIN_CONFIG_FILE
from rait.precision import DEFAULT_PRECISION, PRECISIONS
from rait.records import DEFAULT_SEED

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LENGTH_RULES = ("truncate", "drop")
FINETUNING = ("lora", "full")  # LLaMA-Factory's finetuning_type names
CONFIG_FILE = TRAIN_CONFIG_FILE


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults follow the RA-IT paper (3 epochs, effective batch 8,
    learning rate 5e-5, cosine schedule, LoRA on every attention and MLP projection). ``finetuning="full"``
    trains every weight instead (the ``lora_*`` options are then unused)."""

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
    finetuning: str = "lora"  # lora (an adapter) | full (every weight; saved as a bf16 model)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    max_length: int = 2048  # tokens per conversation
    length_rule: str = "truncate"  # longer conversations: "truncate" or "drop" (counts are logged)
    group_by_length: bool = True  # batch conversations of similar length (less padding)
    seed: int = DEFAULT_SEED
    save_steps: int = 200  # checkpoint every N optimizer steps
    save_total_limit: int | None = 2  # checkpoints kept (None = all)
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    precision: str = DEFAULT_PRECISION  # auto | fp32 | bf16 (rait.precision): bf16 where it is native
    require_chat_template: bool = False  # False: a model without one gets the ChatML fallback (logged)
    system_prompt: str = "none"  # none | default (the chat template's own) | a text; inference reuses it
    validation_fraction: float = (
        0.0  # > 0: hold out this share of conversations (seeded), keep best by val loss
    )
    split_seed: int | None = None  # seed of the hold-out (None: ``seed``), so runs of several seeds share it
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
            (self.finetuning in FINETUNING, f"finetuning must be one of {', '.join(FINETUNING)}"),
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
