"""The ``README.md`` model card of a saved rait model, generated from the files in its directory.

:func:`write_model_card` is called by :meth:`rait.NER.save_pretrained` and at the end of ``rait train``. It
reads what the directory holds: ``rait_config.json`` (inference settings), ``adapter_config.json`` or
``config.json`` (base model, LoRA settings), ``rait_train_config.json`` and ``train_summary.json`` (training
data and settings, from the run), ``builtin.json`` (a built-in model's scores), and takes what no file records
(``scores``, ``license``, ``data_license``) as arguments. The card opens with the Hugging Face Hub's YAML
metadata block."""

from __future__ import annotations

import json
from pathlib import Path

from rait.errors import RaitError
from rait.models import ADAPTER_CONFIG, SUMMARY_FILE, TRAIN_CONFIG_FILE

CARD_FILE = "README.md"
SETTINGS_FILE = "rait_config.json"  # inference settings written by NER.save_pretrained
BUILTIN_FILE = "builtin.json"  # a packaged built-in model's metadata (rait.builtin)
UNRECORDED = "not recorded"
TRAIN_SETTINGS = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "max_length",
    "length_rule",
    "validation_fraction",
    "precision",
    "seed",
    "system_prompt",
)
INTENDED_USE = (
    "Open named entity recognition: for each entity type you name, the mentions of that type in a passage "
    "(one question per type, the UniversalNER-style conversation of Retrieval-Augmented Instruction Tuning), "
    "optionally with retrieved labelled examples shown in context. Load it with rait:"
)
LIMITS = (
    "- It extracts only the types you ask for and can miss mentions or give wrong ones; check its output "
    "before relying on it, above all outside the domains and language it was trained on.",
    "- Scores, where given, are zero-shot micro-F1 on the benchmarks named; other text may score lower.",
    '- With `decoding="free"` it can answer mentions that are not in the text (returned with no offsets).',
    "- Any biases of the base model and of the training data carry over.",
)


def _read(directory: Path, name: str) -> dict:
    path = directory / name
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RaitError(f"{path}: cannot read it for the model card ({exc})") from None


def _value(value) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def render_model_card(
    directory: str | Path,
    *,
    scores: dict[str, float] | None = None,
    license: str | None = None,
    data_license: str | None = None,
    title: str | None = None,
) -> str:
    """The model card (Markdown with a YAML front matter) of the model saved in ``directory``. ``scores``:
    F1 (%) by benchmark; ``license``: the model's licence (Hub identifier, e.g. ``apache-2.0``);
    ``data_license``: the training data's licence, which rait cannot know."""
    directory = Path(directory)
    settings, adapter = _read(directory, SETTINGS_FILE), _read(directory, ADAPTER_CONFIG)
    train, summary = _read(directory, TRAIN_CONFIG_FILE), _read(directory, SUMMARY_FILE)
    base = adapter.get("base_model_name_or_path") or settings.get("base_model") or train.get("model")
    lang = settings.get("lang") or _read(directory, BUILTIN_FILE).get("lang")
    scores = scores or _builtin_scores(_read(directory, BUILTIN_FILE))
    title = title or directory.resolve().name
    front = ["---", "library_name: rait", "tags:", "- named-entity-recognition", "- rait"]
    front += ["- lora"] if adapter else []
    front += [f"base_model: {json.dumps(base)}"] if base else []
    front += [f"license: {license}"] if license else []
    front += [f"language: {lang}"] if lang else []
    front += ["---", ""]
    lines = [f"# {title}", ""]
    weights = (
        f"a LoRA adapter (rank {adapter.get('r')}, alpha {adapter.get('lora_alpha')}) over `{base}`"
        if adapter
        else f"a causal language model (from `{base}`)"
        if base
        else "a causal language model"
    )
    lines += [f"An open NER model trained with rait (`pip install rait`): {weights}.", ""]
    lines += ["## Intended use", "", INTENDED_USE, "", "```python", "import rait", ""]
    if "/" in title:  # a Hub repo id: rait loads local directories
        lines += ["from huggingface_hub import snapshot_download", ""]
        lines += [f'ner = rait.NER.from_pretrained(snapshot_download("{title}"))']
    else:
        lines += [f'ner = rait.NER.from_pretrained("{title}")  # this directory']
    lines += ['ner.predict_entities("Marie Curie won the Nobel Prize.", ["person", "award"])', "```", ""]
    if settings:
        lines += ["Inference settings saved with it (the defaults of `rait.NER.from_pretrained`):", ""]
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_value(value)} |" for key, value in settings.items() if key != "weights"]
        lines += [""]
    if pool := settings.get("pool"):
        lines += [
            f"It ships an example pool: {pool.get('size')} labelled passages (`{pool.get('records')}`, "
            f"with their `{pool.get('embedder')}` embeddings), retrieved {pool.get('mode')} as in-context "
            "examples "
            f'(`examples="pool"`; the default of calls that name none when `examples` is `"pool"`). '
            "The pool is training data: its licence is the training data's.",
            "",
        ]
    lines += ["## Training", ""]
    if train:
        data = ", ".join(f"`{Path(file).name}`" for file in train.get("data", [])) or UNRECORDED
        lines += [f"- **Base model**: `{base or UNRECORDED}`"]
        lines += [f"- **Training data**: {data}" + _data_stats(summary.get("data"))]
        lines += [f"- **Training data licence**: {data_license or UNRECORDED + ' (state it before sharing)'}"]
        lines += ["", "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_value(train[key])} |" for key in TRAIN_SETTINGS if key in train]
        lines += [
            f"| {key} | {_value(summary[key])} |" for key in _SUMMARY_KEYS if summary.get(key) is not None
        ]
        validation = summary.get("validation") or {}
        if validation.get("best_eval_loss") is not None:
            best = f"`{validation['best_eval_loss']:.4f}` (step {validation['best_step']})"
            lines += [f"| best validation loss | {best} |"]
    else:
        lines += [f"- **Base model**: `{base or UNRECORDED}`", f"- Training settings: {UNRECORDED}."]
        lines += [f"- **Training data licence**: {data_license or UNRECORDED}"]
    lines += ["", "## Scores", ""]
    if scores:
        lines += ["Zero-shot micro-F1 (%):", "", "| benchmark | F1 |", "|---|---|"]
        lines += [f"| {name} | {f1:.2f} |" for name, f1 in scores.items()]
    else:
        lines += ["None recorded: measure it with `rait predict ... --evaluate` on your benchmarks."]
    lines += ["", "## Limits", "", *LIMITS, ""]
    return "\n".join(front + lines)


_SUMMARY_KEYS = ("optimizer_steps", "train_loss", "seconds", "device", "dtype", "world_size")


def _data_stats(data: dict | None) -> str:
    if not data:
        return ""
    return f" ({data.get('conversations')} conversations, {data.get('tokens')} tokens)"


def _builtin_scores(info: dict) -> dict[str, float]:
    """The average F1 per decoding a built-in model was packaged with."""
    f1 = info.get("metadata", {}).get("scores", {}).get("f1", {})
    return {
        f"average, {decoding}": table["average"]["f1"] for decoding, table in f1.items() if "average" in table
    }


def write_model_card(directory: str | Path, **options) -> Path:
    """Write :func:`render_model_card` to ``directory/README.md``; returns its path."""
    path = Path(directory) / CARD_FILE
    path.write_text(render_model_card(directory, **options), encoding="utf-8")
    return path
