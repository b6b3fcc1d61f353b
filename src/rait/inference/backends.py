"""Backend loading: :func:`load_predictor` resolves a model (built-in names, adapters, the trained system
prompt) and loads it with one of ``BACKENDS``: ``hf`` (transformers, :mod:`rait.inference.transformers`) or
``vllm`` (:mod:`rait.inference.vllm`)."""

from __future__ import annotations

import logging

from rait.errors import RaitError
from rait.inference.answerer import DEFAULT_BATCH_SIZE, check_decoding
from rait.inference.stopping import DEFAULT_MAX_NEW_TOKENS
from rait.inference.transformers import Predictor
from rait.inference.vllm import VllmPredictor
from rait.precision import DEFAULT_PRECISION

BACKENDS = ("hf", "vllm")

logger = logging.getLogger(__name__)


def load_predictor(
    model: str | None = None,
    *,
    adapter: str | None = None,
    backend: str = "hf",
    lang: str = "en",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    precision: str = DEFAULT_PRECISION,
    system_prompt: str | None = None,
    decoding: str = "free",
    stop_repetition: bool = True,
) -> Predictor | VllmPredictor:
    """A predictor (``hf`` or ``vllm`` backend) for a model name, dir or Hub id, or a LoRA adapter dir;
    ``decoding``: one of :data:`DECODINGS` (:mod:`rait.inference.constrained`). ``model`` and ``adapter`` may
    be built-in model names; neither given: the built-in model when packaged, else the untuned default model
    (:mod:`rait.builtin`).

    ``precision`` (``hf``): ``auto``, ``fp32`` or ``bf16`` (see :mod:`rait.precision`). ``system_prompt``
    (``none``, ``default`` or a text; see :mod:`rait.chat`): None uses the one the adapter or model was
    trained with (its ``rait_train_config.json``), else ``none``. ``stop_repetition``: end a row once it
    repeats itself (:func:`rait.inference.stopping.repeats_itself`)."""
    from rait.builtin import default_model, resolve_builtin
    from rait.models import trained_system_prompt

    check_decoding(decoding, max_new_tokens)
    model, adapter = resolve_builtin(default_model(model, adapter)), resolve_builtin(adapter)
    if system_prompt is None:
        system_prompt = trained_system_prompt(adapter, model) or "none"
    if backend == "vllm":
        return VllmPredictor(
            model,
            adapter=adapter,
            lang=lang,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            decoding=decoding,
            stop_repetition=stop_repetition,
        )
    if backend != "hf":
        raise RaitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from rait.models import default_device, load_model
    from rait.precision import precision_dtype, resolve_precision

    device = device or default_device()
    resolved = resolve_precision(precision, device)
    loaded, tokenizer = load_model(model, adapter=adapter, device=device, dtype=precision_dtype(resolved))
    logger.info("inference precision %s (%s on %s)", resolved, precision, device)
    return Predictor(
        loaded,
        tokenizer,
        lang=lang,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        system_prompt=system_prompt,
        decoding=decoding,
        stop_repetition=stop_repetition,
    )
