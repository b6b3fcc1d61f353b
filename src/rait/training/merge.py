"""``rait merge``: a LoRA adapter merged into its base model, saved atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from rait.errors import RaitError
from rait.models import load_model
from rait.training.config import CONFIG_FILE


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
