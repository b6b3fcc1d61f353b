"""The adapter store: every trained LoRA adapter of an experiment kept in a directory committed to git
(``<adapters>/<experiment>/<training step>/``), so that a fresh machine evaluates instead of training again.

An entry holds the adapter in bf16 (``adapter_model.safetensors``; its config names the base model, whose
tokenizer it uses, so no tokenizer files when the base is a model name), the training config, summary
and log, and ``stored.json``: the *training key* and each file's size and sha256. The key is the sha256 of
the exact training options (execution-only ones aside: micro-batch, checkpoints, logging, paths), the
precision they resolved to and the sha256 of the training data file: :func:`restore` copies an entry into a
run directory only when the run would be trained with the same key. Fully fine-tuned models (hundreds of
MB) are not stored."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from rait.errors import RaitError
from rait.experiment.settings import execution_settings
from rait.fileio import read_json, sha256_file, write_json

logger = logging.getLogger(__name__)

STORED_FILE = "stored.json"
WEIGHTS = "adapter_model.safetensors"
_COPIED = ("adapter_config.json", "rait_train_config.json", "train_summary.json", "train_log.jsonl")
_NOT_RESULT = ("data", "output_dir", "resume")  # where a run reads and writes, not what it trains


def training_key(options: dict, precision: str, data: Path) -> str:
    """The sha256 naming what a training run computes: its options (a ``TrainConfig`` dict) without
    paths and execution settings (:data:`rait.experiment.settings.EXECUTION_SETTINGS`), the resolved
    ``precision`` and the content of its single ``data`` file."""
    ignored = {*_NOT_RESULT, *execution_settings("hyper", options)}
    kept = {k: v for k, v in sorted(options.items()) if k not in ignored}
    text = json.dumps({"options": kept, "precision": precision, "data": sha256_file(data)}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_key(run_dir: Path) -> str:
    """The training key of a finished run directory (its saved config, precision and data file)."""
    from rait.models import TRAIN_CONFIG_FILE
    from rait.training import SUMMARY_FILE, TrainConfig

    saved = TrainConfig.from_dict(read_json(run_dir / TRAIN_CONFIG_FILE), source=run_dir / TRAIN_CONFIG_FILE)
    if len(saved.data) != 1:
        raise RaitError(f"{run_dir}: the adapter store keys runs trained on one data file")
    precision = read_json(run_dir / SUMMARY_FILE)["precision"]
    return training_key(saved.to_dict(), precision, Path(saved.data[0]))  # options added since: defaults


def export(run_dir: Path, entry: Path, key: str | None = None) -> dict | None:
    """Store the finished LoRA run ``run_dir`` as ``entry`` (replaced whole); returns its ``stored.json``,
    or None for a fully fine-tuned run (not stored). ``key`` defaults to :func:`run_key`."""
    from rait.builtin import TOKENIZER_FILES, _file_info, _write_bf16

    run_dir, entry = Path(run_dir), Path(entry)
    if not (run_dir / WEIGHTS).is_file():
        logger.info("%s holds no LoRA adapter (full fine-tuning?): not stored", run_dir)
        return None
    key = key or run_key(run_dir)
    config = read_json(run_dir / "adapter_config.json")
    tmp = entry.with_name(f".{entry.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_bf16(run_dir / WEIGHTS, tmp / WEIGHTS)
    for name in _COPIED:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, tmp / name)
    base = str(config.get("base_model_name_or_path") or "")
    if Path(base).expanduser().is_absolute():  # a local base model: keep the tokenizer the run saved
        for name in TOKENIZER_FILES:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, tmp / name)
    stored = {
        "key": key,
        "base_model": base,
        "files": {file.name: _file_info(file) for file in sorted(tmp.iterdir())},
    }
    write_json(tmp / STORED_FILE, stored)
    if entry.exists():
        shutil.rmtree(entry)
    tmp.rename(entry)
    return stored


def restore(entry: Path, key: str, run_dir: Path) -> bool:
    """Copy a stored adapter into ``run_dir`` when ``entry`` holds one trained with ``key``; False when
    there is none. An entry with another key is left alone (logged): the run trains."""
    entry = Path(entry)
    if not (entry / STORED_FILE).is_file():
        return False
    stored = read_json(entry / STORED_FILE)
    if stored.get("key") != key:
        logger.info("%s was trained with other settings or data; training anew", entry)
        return False
    for name, info in stored["files"].items():
        if sha256_file(entry / name) != info["sha256"]:
            raise RaitError(f"{entry / name} does not match its sha256 in {entry / STORED_FILE}")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    for name in stored["files"]:
        shutil.copyfile(entry / name, Path(run_dir) / name)
    logger.info("%s restored from the adapter store %s", run_dir, entry)
    return True


def stored_training(
    train: Callable[..., Path], key: Callable[..., str], store: Path, name: str, train_root: Path
) -> Callable[..., Path]:
    """``train(config, cell, data, out_dir)`` that first restores ``out_dir`` from the adapter store
    ``store`` and stores what it trains under ``store / name`` (``name``: the experiment's), at
    ``out_dir``'s path under ``train_root``; an entry of another experiment at the same path restores too
    when its key matches. ``key(config, cell, data, out_dir)`` is the run's :func:`training_key`."""

    def run(config, cell, data: Path, out_dir: Path) -> Path:
        relative = Path(out_dir).relative_to(train_root)
        own = Path(store) / name / relative
        others = sorted(p.parent for p in Path(store).glob(f"*/{relative.as_posix()}/{STORED_FILE}"))
        wanted = key(config, cell, data, out_dir)
        for entry in dict.fromkeys([own, *others]):
            if restore(entry, wanted, out_dir):
                if entry != own:
                    export(Path(out_dir), own, wanted)
                return Path(out_dir)
        path = train(config, cell, data, out_dir)
        export(path, own, wanted)
        return path

    return run


def export_adapters(config, steps: list, store: Path | None = None) -> list[tuple[str, Path, dict | None]]:
    """Store every finished LoRA training run among the ``steps`` of experiment ``config``
    (:func:`rait.experiment.runner.plan`; search candidates included) under ``store / config.name``
    (default: the config's ``adapters``); entries already holding the same run are left as they are.
    Returns (step name, entry, its ``stored.json`` or None when not stored) per run."""
    store = store or config.adapters
    if store is None:
        raise RaitError(f"{config.path or 'the config'} names no adapter store (adapters:); give one")
    root = Path(store) / config.name
    exported = []
    for step in steps:
        if step.stage != "train" or step.status() != "done":
            continue
        run_dir = config.output_dir / step.read_marker()["result"]["path"]
        entry = root / run_dir.relative_to(config.output_dir / "train")
        if not (run_dir / WEIGHTS).is_file():
            exported.append((step.name, entry, None))
            continue
        key = run_key(run_dir)
        if (entry / STORED_FILE).is_file() and read_json(entry / STORED_FILE).get("key") == key:
            exported.append((step.name, entry, read_json(entry / STORED_FILE)))
            continue
        exported.append((step.name, entry, export(run_dir, entry, key)))
    return exported
