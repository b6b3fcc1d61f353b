"""Teachers that annotate passages: OpenAI-compatible chat servers and the project's own local model.

A teacher turns a passage into a JSON-able *request* (which also keys the response cache) and answers a
request in one attempt. Transient failures raise :class:`RetryableError`; the caller retries them."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rait.errors import DataError, RaitError
from rait.fileio import read_json

OPENAI_URL = "https://api.openai.com/v1"
PASSAGE = "{passage}"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A chat prompt: optional system message and a user template with a ``{passage}`` placeholder."""

    user: str
    system: str | None = None

    def messages(self, passage: str) -> list[dict]:
        user = {"role": "user", "content": self.user.replace(PASSAGE, passage)}
        return ([{"role": "system", "content": self.system}] if self.system else []) + [user]


PROMPTS: dict[str, Prompt] = {
    # UniversalNER's Pile-NER-type data construction prompt.
    "en": Prompt(
        system="You are a helpful information extraction system.",
        user="Given a passage, your task is to extract all entities and identify their entity types. "
        "The output should be in a list of tuples of the following format: "
        '[("entity 1", "type of entity 1"), ... ].\nPassage: ' + PASSAGE,
    ),
    # The RA-IT paper's Chinese annotation prompt.
    "zh": Prompt(
        system="你是一个有效的信息抽取系统。",
        user="给定一段文本，你的任务是抽取所有实体并识别它们的实体类别。"
        '输出应为以下JSON格式：[{"实体1": "实体1的类别"}, ...]。\n文本：' + PASSAGE,
    ),
}

DEFAULT_TYPES: dict[str, list[str]] = {
    "en": ["person", "organization", "location", "date", "event", "product"],
    "zh": ["人物", "组织机构", "地点", "日期", "事件", "产品"],
}


def load_prompt(path: str | Path) -> Prompt:
    """A prompt from a JSON file ``{"system": "..." | null, "user": "... {passage} ..."}``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with 'user' (and optionally 'system')")
    user, system = data.get("user"), data.get("system")
    if not isinstance(user, str) or PASSAGE not in user:
        raise DataError(path, f"must be a string containing the placeholder {PASSAGE}", field="user")
    if system is not None and not isinstance(system, str):
        raise DataError(path, "must be a string or null", field="system")
    return Prompt(user=user, system=system or None)


@dataclass(frozen=True, slots=True)
class TeacherReply:
    """One answer: raw model text, or ``[mention, type]`` pairs from a structured teacher; ``tokens`` is
    the server-reported usage (0 when unknown or free)."""

    output: str | list[list[str]]
    tokens: int = 0


class RetryableError(Exception):
    """A transient failure (rate limit, 5xx, timeout, dropped connection, garbled response)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RequestFailed(Exception):
    """A permanent failure of this one request (e.g. HTTP 400); other requests may still succeed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Teacher(Protocol):
    """What the pipeline needs from a teacher. ``paid`` teachers count against the budget."""

    name: str
    paid: bool

    def request(self, text: str) -> dict: ...

    def annotate(self, request: dict) -> TeacherReply: ...


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAITeacher:
    """A model behind an OpenAI-compatible chat completions API (OpenAI, gateways, vLLM, llama.cpp).

    ``base_url``/``api_key`` default to ``$OPENAI_BASE_URL``/``$OPENAI_API_KEY``; a non-OpenAI server
    without a key gets the placeholder key ``EMPTY``. The client never retries on its own."""

    paid = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        prompt: Prompt | None = None,
        lang: str = "en",
        temperature: float = 0.0,
        max_output_tokens: int | None = None,
        timeout: float = 60.0,
    ):
        import openai

        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if api_key is None:
            if self.base_url == OPENAI_URL:
                raise RaitError("no API key for the OpenAI API: set OPENAI_API_KEY or pass --api-key")
            api_key = "EMPTY"
        self.name = f"openai:{model}@{self.base_url}"
        self.prompt = prompt or PROMPTS[lang]
        self.params: dict = {"temperature": temperature}
        if max_output_tokens is not None:
            self.params["max_tokens"] = max_output_tokens
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=timeout)

    def request(self, text: str) -> dict:
        return {
            "base_url": self.base_url,
            "model": self.model,
            "messages": self.prompt.messages(text),
            "params": self.params,
        }

    def annotate(self, request: dict) -> TeacherReply:
        errors = self._openai
        try:
            response = self._client.chat.completions.create(
                model=request["model"], messages=request["messages"], **request["params"]
            )
        except errors.APITimeoutError:
            raise RetryableError("timeout") from None
        except errors.APIConnectionError:
            raise RetryableError("connection_error") from None
        except errors.APIStatusError as exc:
            code = exc.status_code
            if code == 429 or code >= 500 or code == 408:
                raise RetryableError(f"http_{code}", _retry_after(exc)) from None
            if code in (401, 403, 404):
                raise RaitError(f"teacher {self.name}: HTTP {code}: {exc.message}") from None
            raise RequestFailed(f"http_{code}") from None
        except (ValueError, errors.APIResponseValidationError):
            raise RetryableError("bad_response") from None
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise RetryableError("bad_response") from None
        usage = getattr(response, "usage", None)
        return TeacherReply(output=content or "", tokens=int(getattr(usage, "total_tokens", 0) or 0))


class LocalTeacher:
    """The project's own predictor as a teacher. It answers per type, so it is asked about ``types``.

    ``ner`` is anything with ``predict_entities(text, types) -> [{"text", "type", ...}]`` (``rait.api.NER``),
    or a function without arguments that loads one on first use (so a fully cached run loads no model).
    Calls are serialised: one model, one thread at a time."""

    paid = False

    def __init__(self, ner, types: Sequence[str], model_id: str):
        if not types:
            raise ValueError("the local teacher needs at least one entity type")
        self._ner = ner
        self.types = list(types)
        self.model_id = model_id
        self.name = f"local:{model_id}"
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, path: str | None = None, types: Sequence[str] | None = None, lang: str = "en"
    ) -> LocalTeacher:
        """A teacher that loads ``rait.api.NER`` from ``path`` (default: the project's default model)."""
        try:
            from rait.api import NER
        except ImportError as exc:
            raise RaitError(f"the local teacher needs rait.api, which cannot be imported: {exc}") from None
        if path is None:
            from rait.models import DEFAULT_MODEL

            path = DEFAULT_MODEL
        return cls(lambda: NER.from_pretrained(path, lang=lang), types or DEFAULT_TYPES[lang], str(path))

    def request(self, text: str) -> dict:
        return {"local_model": self.model_id, "types": self.types, "text": text}

    def annotate(self, request: dict) -> TeacherReply:
        with self._lock:
            if not hasattr(self._ner, "predict_entities"):
                self._ner = self._ner()
            entities = self._ner.predict_entities(request["text"], request["types"])
        pairs = dict.fromkeys((entity["text"], entity["type"]) for entity in entities)  # one per occurrence
        return TeacherReply(output=[list(pair) for pair in pairs])


@dataclass(frozen=True, slots=True)
class TeacherSpec:
    """A parsed ``--teacher`` value: ``local``, ``local:PATH``, ``openai:MODEL`` or ``openai:MODEL@URL``."""

    kind: str
    model: str | None = None
    base_url: str | None = None

    @classmethod
    def parse(cls, spec: str) -> TeacherSpec:
        kind, _, rest = spec.partition(":")
        if kind == "local":
            return cls("local", rest or None)
        if kind == "openai" and rest:
            model, at, url = rest.rpartition("@") if "@http" in rest else (rest, "", "")
            return cls("openai", model, url if at else None)
        raise RaitError(f"bad teacher {spec!r}: use local, local:PATH, openai:MODEL or openai:MODEL@BASE_URL")
