"""Built-in NER models: trained LoRA adapters shipped inside the package (bf16), loaded offline by name.

``rait.NER.from_pretrained()``, ``rait predict`` and ``rait serve`` use :data:`DEFAULT_BUILTIN` when given
no model and it is packaged in this install; ``"smollm2-135m"`` still names the untuned base model. A
packaged model is an ordinary adapter directory (``adapter_config.json`` names its base model by its
portable name), so it loads through :func:`rait.models.load_model` like any other. Maintainers package a
trained adapter with :func:`package_adapter` (``scripts/ship_model.py``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rait.errors import RaitError
from rait.model_card import SETTINGS_FILE
from rait.models import ADAPTER_CONFIG, DEFAULT_MODEL, TRAIN_CONFIG_FILE

logger = logging.getLogger(__name__)

MODELS_ROOT = Path(__file__).parent / "resources" / "models"
METADATA_FILE = "builtin.json"
WEIGHTS_FILE = "adapter_model.safetensors"
REQUIRED_FILES = (ADAPTER_CONFIG, WEIGHTS_FILE, TRAIN_CONFIG_FILE)  # the training config holds the prompt
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """A built-in model: its short name, the base model it adapts (a name rait resolves offline), the
    language it was tuned for and a one-line description."""

    name: str
    base_model: str
    lang: str
    description: str


BUILTIN_MODELS = {
    model.name: model
    for model in (
        BuiltinModel(
            "smollm2-ner-en",
            DEFAULT_MODEL,
            "en",
            "SmolLM2-135M-Instruct LoRA-tuned by rait for English open NER",
        ),
    )
}
DEFAULT_BUILTIN = "smollm2-ner-en"


def is_builtin(name: str | None) -> bool:
    """Whether ``name`` is the short name of a built-in model (packaged or not)."""
    return name in BUILTIN_MODELS


def builtin_path(name: str, root: str | Path | None = None) -> Path:
    """The directory of built-in model ``name`` under ``root`` (default: the package's models folder)."""
    if name not in BUILTIN_MODELS:
        raise RaitError(f"unknown built-in model {name!r}; choose one of {', '.join(BUILTIN_MODELS)}")
    return Path(root or MODELS_ROOT) / name


def is_packaged(name: str, root: str | Path | None = None) -> bool:
    """Whether built-in model ``name`` is packaged (its adapter files are present)."""
    path = builtin_path(name, root)
    return all((path / file).is_file() for file in REQUIRED_FILES)


def default_model(model: str | None, adapter: str | None = None) -> str | None:
    """``model``, or :data:`DEFAULT_BUILTIN` when neither a model nor an adapter is given and it is
    packaged (else None: the untuned embedded base model)."""
    if model is None and adapter is None and is_packaged(DEFAULT_BUILTIN):
        return DEFAULT_BUILTIN
    return model


def resolve_builtin(name: str | None) -> str | None:
    """A built-in model's directory for its short name; any other value unchanged. A built-in model that
    is not packaged raises :class:`RaitError`."""
    if not is_builtin(name):
        return name
    if not is_packaged(name):
        raise RaitError(
            f"built-in model {name} is not packaged in this install of rait (no adapter in "
            f"{builtin_path(name)}); use {DEFAULT_MODEL} for the untuned base model or an adapter directory"
        )
    return str(builtin_path(name))


def package_adapter(
    adapter_dir: str | Path,
    name: str = DEFAULT_BUILTIN,
    *,
    metadata: dict,
    root: str | Path | None = None,
    overwrite: bool = False,
    settings: dict | None = None,
    pool=None,
) -> Path:
    """Package a trained rait adapter directory as built-in model ``name``; returns its directory.

    Keeps only what inference needs (adapter weights converted to bf16, adapter config, training config
    with its system prompt, tokenizer files), names the base model by its portable name in
    ``adapter_config.json`` (its target modules sorted) and writes ``builtin.json``: name, base model,
    language, ``metadata`` (JSON: source run, selection, scores) and every file's size and sha256.
    ``settings`` (e.g. ``threshold``, ``examples``) go to ``rait_config.json``, the defaults
    :meth:`rait.NER.from_pretrained` loads it with; ``pool`` (an :class:`rait.retrieval.ExamplePool`) is
    saved beside them, its description under ``settings["pool"]`` (which holds its mode, k and BM25
    threshold). The same input gives the same bytes. An existing packaged model is replaced only with
    ``overwrite``; the directory is swapped in whole."""
    target = builtin_path(name, root)
    entry = BUILTIN_MODELS[name]
    source = Path(adapter_dir).expanduser()
    missing = [file for file in REQUIRED_FILES if not (source / file).is_file()]
    if missing:
        raise RaitError(f"{source} is not a trained rait adapter directory: no {', '.join(missing)}")
    try:
        config = json.loads((source / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        metadata_text = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    except (OSError, ValueError, TypeError) as exc:
        raise RaitError(f"cannot package {source}: {exc}") from None
    base = str(config.get("base_model_name_or_path") or "")
    if base != entry.base_model and not os.path.isabs(os.path.expanduser(base)):
        adapted = base or "an unnamed base model"
        raise RaitError(f"{source} adapts {adapted}; built-in model {name} adapts {entry.base_model}")
    if base != entry.base_model:
        logger.info("base model %s renamed %s (its portable name)", base, entry.base_model)
    if target.exists() and not overwrite:
        raise RaitError(
            f"built-in model {name} is already packaged in {target}; pass overwrite to replace it"
        )
    config["base_model_name_or_path"] = entry.base_model
    if isinstance(config.get("target_modules"), list):  # PEFT writes a set's order, which varies by process
        config["target_modules"] = sorted(config["target_modules"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        _write_bf16(source / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for file in (TRAIN_CONFIG_FILE, *TOKENIZER_FILES):
            if (source / file).is_file():
                shutil.copyfile(source / file, tmp / file)
        if settings or pool is not None:
            saved = dict(settings or {})
            if pool is not None:
                saved["pool"] = {**pool.save(tmp), **saved.get("pool", {})}
            (tmp / SETTINGS_FILE).write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", "utf-8")
        info = {
            "name": name,
            "base_model": entry.base_model,
            "lang": entry.lang,
            "metadata": json.loads(metadata_text),
            "files": {file.name: _file_info(file) for file in sorted(tmp.iterdir())},
        }
        (tmp / METADATA_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for path in (tmp, *tmp.iterdir()):  # mkdtemp's 0700 (and safetensors' 0600) would lock others out
            path.chmod(0o755 if path.is_dir() else 0o644)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def builtin_info(name: str = DEFAULT_BUILTIN, root: str | Path | None = None) -> dict:
    """The ``builtin.json`` of a packaged built-in model."""
    path = builtin_path(name, root) / METADATA_FILE
    if not path.is_file():
        raise RaitError(f"built-in model {name} is not packaged (no {path})")
    return json.loads(path.read_text(encoding="utf-8"))


def model_card(name: str = DEFAULT_BUILTIN, root: str | Path | None = None) -> str:
    """A Markdown model card drafted from a packaged model's ``builtin.json`` and training config: how to
    load it, its training settings, the metadata it was packaged with, its files."""
    info = builtin_info(name, root)
    train = json.loads((builtin_path(name, root) / TRAIN_CONFIG_FILE).read_text(encoding="utf-8"))
    adapter = json.loads((builtin_path(name, root) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    lines = [
        f"# {name}",
        "",
        f"{BUILTIN_MODELS[name].description}: a LoRA adapter (rank {adapter.get('r')}, alpha "
        f"{adapter.get('lora_alpha')}) over `{info['base_model']}`, shipped in bf16 inside the rait package.",
        "",
        "## Use",
        "",
        "```python",
        "import rait",
        f'ner = rait.NER.from_pretrained()            # or rait.NER.from_pretrained("{name}")',
        "```",
        "",
        "`rait predict` and `rait serve` use it when given no model; "
        f"`-m {info['base_model']}` is the untuned base model.",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {key} | `{json.dumps(value, ensure_ascii=False)}` |" for key, value in train.items()),
    ]
    for key, value in info["metadata"].items():
        text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
        lines += ["", f"## {key.replace('_', ' ').capitalize()}", "", "```json", text, "```"]
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {file} | {f['bytes']} | `{f['sha256']}` |" for file, f in info["files"].items()]
    return "\n".join(lines) + "\n"


def _write_bf16(source: Path, target: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    try:
        tensors = load_file(source)
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise RaitError(f"{source}: cannot read adapter weights ({exc})") from None
    converted = {
        key: (tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor).contiguous()
        for key, tensor in sorted(tensors.items())
    }
    save_file(converted, target, metadata={"format": "pt"})


def _file_info(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
