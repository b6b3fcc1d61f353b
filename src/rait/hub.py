"""Saving a loaded :class:`rait.NER` the Hugging Face way and sharing it on the Hub.

:func:`save_ner` writes a directory that :meth:`rait.NER.from_pretrained` loads with the same behaviour:
the LoRA adapter the model was loaded with (its config, weights, training config and summary) or, for a
model loaded without one, the merged weights; the tokenizer; ``rait_config.json`` with the inference
settings (decoding, system prompt, language, confidence threshold, multi_label, the examples mode of calls
that name none); the NER's example pool, if it has one (its records and embeddings, with its mode, k and
BM25 threshold in the settings); and a ``README.md`` model card (:mod:`rait.model_card`).
:func:`push_folder` uploads such a directory through ``huggingface_hub``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rait.builtin import WEIGHTS_FILE
from rait.errors import RaitError
from rait.fileio import read_json, write_json
from rait.model_card import BUILTIN_FILE, SETTINGS_FILE, write_model_card
from rait.models import ADAPTER_CONFIG, SUMMARY_FILE, TRAIN_CONFIG_FILE

ADAPTER_FILES = (ADAPTER_CONFIG, WEIGHTS_FILE, TRAIN_CONFIG_FILE, SUMMARY_FILE, BUILTIN_FILE)


def saved_settings(path_or_id: str | None) -> dict:
    """The inference settings of a directory written by :func:`save_ner` or of a packaged built-in model
    (empty for anything else)."""
    path = None if path_or_id is None else Path(path_or_id).expanduser() / SETTINGS_FILE
    return read_json(path) if path is not None and path.is_file() else {}


def save_ner(ner, directory: str | Path, *, card: dict | None = None) -> Path:
    """Write ``ner`` to ``directory`` (created; files of the same names replaced); ``card``: options of
    :func:`rait.model_card.render_model_card` (``scores``, ``license``, ``data_license``, ``title``)."""
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise RaitError(f"{directory} is a file; save_pretrained needs a directory")
    predictor = ner.predictor
    model, adapter = getattr(ner, "loaded_from", (None, None))
    directory.mkdir(parents=True, exist_ok=True)
    if adapter is not None:
        weights = "adapter"
        for name in ADAPTER_FILES:
            if (Path(adapter) / name).is_file() and Path(adapter).resolve() != directory.resolve():
                shutil.copyfile(Path(adapter) / name, directory / name)
    elif hasattr(predictor, "model"):
        weights = "merged"
        predictor.model.save_pretrained(directory)
        for name in (TRAIN_CONFIG_FILE, SUMMARY_FILE):  # a merged model dir keeps its training record
            if model is not None and (Path(model) / name).is_file():
                shutil.copyfile(Path(model) / name, directory / name)
    else:
        raise RaitError(
            "this model has no adapter and its weights live in vLLM: load it with backend='hf' to save"
        )
    predictor.tokenizer.save_pretrained(directory)
    settings = {
        "weights": weights,
        "base_model": read_json(directory / ADAPTER_CONFIG).get("base_model_name_or_path")
        if adapter
        else model,
        "decoding": getattr(predictor, "decoding", None),
        "system_prompt": getattr(predictor, "system_prompt", "none"),
        "lang": ner.lang,
    }
    settings |= {"threshold": ner.threshold, "multi_label": ner.multi_label, "examples": ner.examples}
    if ner.pool is not None:
        settings["pool"] = {
            **ner.pool.save(directory),
            "mode": ner.pool_mode,
            "k": ner.k,
            "bm25_threshold": ner.bm25_threshold,
        }
    write_json(directory / SETTINGS_FILE, settings)
    write_model_card(directory, **(card or {}))
    return directory


def push_folder(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload rait NER model",
    api=None,
):
    """Create model repo ``repo_id`` if needed and upload ``directory`` to it; returns the upload's commit
    info. ``api``: an ``huggingface_hub.HfApi`` (default: a new one with ``token``)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(
            folder_path=str(directory), repo_id=repo_id, repo_type="model", commit_message=commit_message
        )
    except OSError as exc:  # huggingface_hub's HTTP and connection errors are OSErrors
        raise RaitError(f"cannot push to the Hub repo {repo_id}: {str(exc).splitlines()[0]}") from None


def push_ner(ner, repo_id: str, *, card: dict | None = None, **options):
    """:func:`save_ner` into a temporary directory, then :func:`push_folder` it to ``repo_id``."""
    with tempfile.TemporaryDirectory(prefix="rait-push-") as tmp:
        save_ner(ner, tmp, card={"title": repo_id, **(card or {})})
        return push_folder(tmp, repo_id, **options)
