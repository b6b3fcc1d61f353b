"""`rait serve`: real servers on 127.0.0.1 (in-process over a lookup predictor; the CLI over a tiny model),
request batching, limits and errors, SIGTERM draining, and the web page in headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="rait serve needs the serve extra: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (serve extra)")
uvicorn = pytest.importorskip("uvicorn", reason="rait serve needs the serve extra: pip install -e '.[serve]'")

from rait.api import NER  # noqa: E402
from rait.inference import DEFAULT_MAX_CHUNK_TOKENS  # noqa: E402
from rait.records import Mention, Record  # noqa: E402
from rait.serve.app import ServeLimits, create_app  # noqa: E402
from rait.testing import lookup_predictor, save_tiny_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KNOWN = {
    "person": ["Marie Curie", "Barack Obama"],
    "location": ["Paris", "Honolulu"],
    "award": ["Nobel Prize in Physics"],
    "scientist": ["Marie Curie"],
    "人名": ["马云"],
    "地名": ["杭州"],
}
TEXT = "Marie Curie moved to Paris in 1891 and later won the Nobel Prize in Physics."
LIMITS = ServeLimits(max_text_chars=2000, max_texts=8, max_types=4, max_queue=16, max_batch=8, max_wait_ms=20)
DEADLINE_S = 120  # every wait below is bounded by this


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running_server(ner: NER, limits: ServeLimits = LIMITS, allowed_hosts: tuple[str, ...] | None = None):
    """The app served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    sock = free_socket()
    app = create_app(ner, limits, {"model": "lookup"}, allowed_hosts)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wait_until(lambda: server.started, "the server did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(DEADLINE_S)
        sock.close()


def wait_until(condition, message: str, timeout: float = DEADLINE_S) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(message)


class Gate:
    """Holds the predictor's next call until released (so requests pile up in the queue)."""

    def __init__(self, predictor):
        self.event = threading.Event()
        inner = predictor.iter_answers

        def gated(queries):
            assert self.event.wait(DEADLINE_S), "gate never released"
            yield from inner(queries)

        predictor.iter_answers = gated


@pytest.fixture(scope="module")
def server():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    with running_server(NER(predictor)) as base:
        yield base, predictor


def post(base: str, body, timeout: float = 60) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json"}
    return httpx.post(f"{base}/v1/extract", content=content, headers=headers, timeout=timeout)


def test_extract_one_text(server):
    base, _ = server
    response = post(base, {"text": TEXT, "types": ["person", "location", "award"]})
    assert response.status_code == 200
    data = response.json()
    [result] = data["results"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in result["entities"]] == [
        ("Marie Curie", "person", 0, 11),
        ("Paris", "location", 21, 26),
        ("Nobel Prize in Physics", "award", 53, 75),
    ]
    assert result["chunks"] == [[0, len(TEXT)]] and result["malformed"] == 0
    assert set(data["timing"]) == {"queue_ms", "predict_ms", "total_ms", "batch_texts", "batches"}


def test_extract_a_list_with_per_text_types_and_chinese(server):
    base, _ = server
    body = {"text": [TEXT, "马云在杭州创立了公司。"], "types": [["person"], ["人名", "地名"]]}
    results = post(base, body).json()["results"]
    assert [[(e["text"], e["type"]) for e in r["entities"]] for r in results] == [
        [("Marie Curie", "person")],
        [("马云", "人名"), ("杭州", "地名")],
    ]


def test_long_text_is_chunked(server):
    base, _ = server
    text = " ".join([TEXT] * 12)
    with running_server(NER(server[1], max_chunk_tokens=64)) as small:
        [result] = post(small, {"text": text, "types": ["person"]}).json()["results"]
    assert len(result["chunks"]) > 1
    assert [e["start"] for e in result["entities"]] == [i * (len(TEXT) + 1) for i in range(12)]


def test_info_health_and_page(server):
    base, _ = server
    info = httpx.get(f"{base}/v1/info").json()
    assert info["model"] == "lookup" and info["languages"] == ["en", "zh"] and info["examples"] == ["none"]
    assert info["limits"]["max_types"] == 4 and info["context_tokens"] == 1024
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/extract" in page.text and "http://" not in page.text and "https://" not in page.text


@contextlib.contextmanager
def seen_in_batches(predictor, setting: str):
    """The list of ``predictor``'s ``setting`` at each batch it decodes inside the block."""
    seen, greedy = [], predictor._greedy

    def recording(*args, **kwargs):
        seen.append(getattr(predictor, setting))
        return greedy(*args, **kwargs)

    predictor._greedy = recording
    try:
        yield seen
    finally:
        del predictor._greedy


def test_decoding_per_request(server):
    base, predictor = server
    with seen_in_batches(predictor, "decoding") as seen:
        for decoding in ("constrained", None, "free"):
            body = {"text": TEXT, "types": ["person"], "decoding": decoding}
            assert post(base, body).json()["results"][0]["entities"][0]["text"] == "Marie Curie"
    assert seen == ["constrained", "free", "free"] and predictor.decoding == "free"
    info = httpx.get(f"{base}/v1/info").json()
    assert (info["decoding"], info["decodings"]) == ("free", ["free", "constrained", "constrained-words"])


def test_threshold_and_multi_label_per_request(server):
    """The lookup model gives no scores (they count as 1): the same span asked as person and scientist keeps
    one type by default (ties: the first type asked) and both with multi_label."""
    base, _ = server
    body = {"text": TEXT, "types": ["person", "scientist"]}
    types = [
        [e["type"] for e in post(base, body | extra).json()["results"][0]["entities"]]
        for extra in ({}, {"multi_label": True}, {"multi_label": False, "threshold": 1}, {"threshold": 0})
    ]
    assert types == [["person"], ["person", "scientist"], ["person"], ["person"]]
    info = httpx.get(f"{base}/v1/info").json()
    assert (info["threshold"], info["multi_label"]) == (0.92, False)


def test_a_batch_is_decoded_at_the_lowest_threshold_of_its_requests(server):
    base, predictor = server
    with seen_in_batches(predictor, "min_score") as seen:
        for threshold in (None, 0.5, 0):
            post(base, {"text": TEXT, "types": ["person"], "threshold": threshold})
    assert seen == [0.92, 0.5, None] and predictor.min_score is None

    from rait.serve.batcher import Batcher, _Job

    class Recorder:
        def extract(self, texts, types, examples, **options):
            calls.append(options["threshold"])
            return []

    calls = []
    jobs = [_Job([t], [("person",)], "none", None, None, floor) for t, floor in (("a", 0.9), ("b", 0.5))]
    for job in jobs:
        job.cut()
    Batcher(Recorder())._extract([job.pieces[0] for job in jobs], "none", None)
    assert calls == [0.5]


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"text": "x", "types": ["person"], "threshold": 1.5}, 422, "threshold", "less than or equal to 1"),
        ({"text": "x", "types": ["person"], "threshold": "high"}, 422, "threshold", "valid number"),
        ({"text": "x", "types": ["person"], "multi_label": "yes"}, 422, "multi_label", "valid boolean"),
        ("{bad json", 422, "body", "malformed JSON"),
        ("[]", 422, "body", "valid dictionary"),
        ({"types": ["person"]}, 422, "text", "field required"),
        ({"text": 3, "types": ["person"]}, 422, "text", "string or a list of strings"),
        ({"text": "x", "types": []}, 422, "types", "at least 1 item"),
        ({"text": "x", "types": ["person", " "]}, 422, "types", "types.1"),
        ({"text": "x", "types": "person"}, 422, "types", "valid list"),
        ({"text": "x", "types": ["person"], "temperature": 1}, 422, "temperature", "unknown field"),
        ({"text": "x", "types": ["person"], "examples": "all"}, 422, "examples", "'in-domain'"),
        ({"text": "x", "types": ["person"], "examples": "pool"}, 422, "examples", "--pool"),
        ({"text": "x", "types": ["person"], "decoding": "beam"}, 422, "decoding", "'constrained'"),
        ({"text": [], "types": ["person"]}, 422, "text", "non-empty list"),
        ({"text": ["a", "b"], "types": [["person"]]}, 422, "types", "1 lists of types for 2 texts"),
        ({"text": "x", "types": ["a", "b", "c", "d", "e"]}, 422, "types", "limit of 4"),
        ({"text": "x" * 2001, "types": ["person"]}, 413, "text", "2001 characters"),
        ({"text": ["x"] * 9, "types": ["person"]}, 413, "text", "9 texts"),
    ],
)
def test_bad_requests_get_json_errors_naming_the_field(server, body, status, field, message):
    base, _ = server
    response = post(base, body)
    assert response.status_code == status
    assert response.json()["field"] == field and message in response.json()["error"]


def test_concurrent_requests_share_one_predictor_batch():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    gate = Gate(predictor)
    with running_server(NER(predictor)) as base:
        responses: dict[int, httpx.Response] = {}

        def client(i: int) -> None:
            responses[i] = post(base, {"text": f"Barack Obama visited Paris ({i}).", "types": ["person"]})

        first = threading.Thread(target=client, args=(0,))
        first.start()  # taken by the worker, which waits at the gate
        wait_until(lambda: predictor.iter_calls == 0 and _pending(base) == 1, "first request not running")
        others = [threading.Thread(target=client, args=(i,)) for i in range(1, 7)]
        for thread in others:
            thread.start()
        wait_until(lambda: _pending(base) == 7, "requests did not queue")
        gate.event.set()
        for thread in [first, *others]:
            thread.join(DEADLINE_S)
    assert sorted(responses) == list(range(7))
    assert all(r.status_code == 200 for r in responses.values())
    assert [r.json()["timing"]["batch_texts"] for _, r in sorted(responses.items())] == [1] + [6] * 6
    assert predictor.iter_calls == 2  # seven requests, two predictor calls
    for i, response in responses.items():
        [result] = response.json()["results"]
        assert [e["text"] for e in result["entities"]] == ["Barack Obama"], i


def _pending(base: str) -> int:
    return httpx.get(f"{base}/health").json()["pending_texts"]


class FakePool:
    def retrieve(self, texts, k=2, strategy="nn", **kwargs):
        return [[Record("p", "Honolulu is warm.", [Mention("Honolulu", "location")])] * k for _ in texts]


def test_example_modes_in_one_batch_use_the_pool():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    gate = Gate(predictor)
    with running_server(NER(predictor, pool=FakePool(), k=2)) as base:
        info = httpx.get(f"{base}/v1/info").json()
        responses = {}

        def client(mode: str) -> None:
            responses[mode] = post(base, {"text": "Paris.", "types": ["location"], "examples": mode})

        threads = [
            threading.Thread(target=client, args=(mode,)) for mode in ("none", "in-domain", "out-domain")
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: _pending(base) == 3, "requests did not queue")
        gate.event.set()
        for thread in threads:
            thread.join(DEADLINE_S)
    assert info["examples"] == ["none", "pool", "out-domain", "in-domain"]
    assert {mode: r.json()["results"][0]["examples"] for mode, r in responses.items()} == {
        "none": 0,
        "in-domain": 2,
        "out-domain": 2,
    }
    assert all(r.json()["results"][0]["entities"][0]["text"] == "Paris" for r in responses.values())


def test_a_request_without_examples_gets_the_servers_default_mode():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    with running_server(NER(predictor, pool=FakePool(), k=1, examples="pool")) as base:
        info = httpx.get(f"{base}/v1/info").json()
        default = post(base, {"text": "Paris.", "types": ["location"]}).json()["results"][0]
        none = post(base, {"text": "Paris.", "types": ["location"], "examples": "none"}).json()["results"][0]
    assert info["examples_default"] == "pool"
    assert (default["examples"], none["examples"]) == (1, 0)


def test_a_full_queue_answers_503_at_once():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    gate = Gate(predictor)
    limits = ServeLimits(max_queue=2, max_batch=1, max_wait_ms=0)
    with running_server(NER(predictor), limits) as base:
        threads = [
            threading.Thread(target=post, args=(base, {"text": "Paris.", "types": ["location"]}))
            for _ in "ab"
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: _pending(base) == 2, "requests did not queue")
        refused = post(base, {"text": "Paris.", "types": ["location"]})
        gate.event.set()
        for thread in threads:
            thread.join(DEADLINE_S)
        after = post(base, {"text": "Paris.", "types": ["location"]})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "server busy" in refused.json()["error"]
    assert after.status_code == 200


def test_a_failing_prediction_is_a_500_json_error_and_the_server_keeps_serving(caplog):
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    real = predictor.iter_answers
    calls = []

    def flaky(queries):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        yield from real(queries)

    predictor.iter_answers = flaky
    with running_server(NER(predictor)) as base:
        failed = post(base, {"text": "Paris.", "types": ["location"]})
        ok = post(base, {"text": "Paris.", "types": ["location"]})
    assert failed.status_code == 500 and "out of memory" not in failed.text  # internals stay in the log
    error_id = failed.json()["error_id"]
    assert error_id in failed.json()["error"]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert "out of memory" in str(record.exc_info[1])
    assert ok.status_code == 200


class Recorder:
    """Records the texts of each predictor call; raises on texts containing ``poison``."""

    def __init__(self, predictor, poison: str | None = None):
        self.calls: list[list[str]] = []
        inner = predictor.iter_answers

        def recorded(queries):
            queries = list(queries)
            self.calls.append([q.text for q in queries])
            if poison is not None and any(poison in q.text for q in queries):
                raise ValueError(f"cannot tokenize {poison}")
            yield from inner(queries)

        predictor.iter_answers = recorded


def test_a_bad_request_never_fails_the_good_requests_batched_with_it():
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    recorder = Recorder(predictor, poison="POISON")
    gate = Gate(predictor)
    with running_server(NER(predictor)) as base:
        responses: dict[str, httpx.Response] = {}
        bodies = {
            "first": {"text": "Paris.", "types": ["location"]},
            "surrogate": '{"text": "Marie \\ud800 Curie", "types": ["person"]}',
            "surrogate type": '{"text": "Marie Curie", "types": ["per\\udfffson"]}',
            "poison": {"text": "POISON Paris.", "types": ["location"]},
            **{f"good {i}": {"text": f"Barack Obama in Paris ({i}).", "types": ["person"]} for i in range(3)},
        }

        def client(name: str) -> None:
            responses[name] = post(base, bodies[name])

        first = threading.Thread(target=client, args=("first",))
        first.start()  # holds the worker at the gate while the rest arrive together
        wait_until(lambda: _pending(base) == 1, "first request not running")
        others = [threading.Thread(target=client, args=(name,)) for name in bodies if name != "first"]
        for thread in others:
            thread.start()
        wait_until(lambda: _pending(base) == 5 and len(responses) == 2, "requests did not queue")
        gate.event.set()
        for thread in [first, *others]:
            thread.join(DEADLINE_S)
    for name in ("surrogate", "surrogate type"):  # refused before they reach a batch
        assert responses[name].status_code == 422, responses[name].text
        field = "types" if "type" in name else "text"
        answer = responses[name].json()
        assert answer["field"] == field and "not valid Unicode (a lone surrogate" in answer["error"], answer
    assert responses["poison"].status_code == 500 and "error_id" in responses["poison"].json()
    for i in range(3):
        response = responses[f"good {i}"]
        assert response.status_code == 200, response.text
        assert [e["text"] for e in response.json()["results"][0]["entities"]] == ["Barack Obama"]
    assert len(recorder.calls[1]) == 4  # the poison and the three good texts did share one batch


def _big_then_small(big: dict, limits: ServeLimits, max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS):
    """``big`` served whole, then served with ``limits`` while a one-sentence request arrives during its
    first batch: (the whole response, the big and the small responses, the texts of each predictor call)."""
    with running_server(
        NER(lookup_predictor(KNOWN, max_new_tokens=16), max_chunk_tokens=max_chunk_tokens)
    ) as base:
        whole = post(base, big).json()
    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    gate = Gate(predictor)
    recorder = Recorder(predictor)  # records each call before the gate holds it
    n_big = len(big["text"]) if isinstance(big["text"], list) else 1
    with running_server(NER(predictor, max_chunk_tokens=max_chunk_tokens), limits) as base:
        responses: dict[str, httpx.Response] = {}

        def client(name: str, body: dict) -> None:
            responses[name] = post(base, body)

        threads = [threading.Thread(target=client, args=("big", big))]
        threads[0].start()
        wait_until(lambda: len(recorder.calls) == 1, "the big request did not start")
        threads.append(
            threading.Thread(target=client, args=("small", {"text": "Paris.", "types": ["location"]}))
        )
        threads[1].start()
        wait_until(lambda: _pending(base) == n_big + 1, "the small request did not queue")
        gate.event.set()
        for thread in threads:
            thread.join(DEADLINE_S)
    return whole, responses["big"].json(), responses["small"].json(), recorder.calls


def test_a_big_request_is_served_text_by_text_and_a_small_one_goes_first():
    """A request of several texts is cut text by text (each with all its types, never by type): a small
    request arriving meanwhile is served before its next text, and the entities are those served whole."""
    types = ["person", "location", "award", "date"]
    limits = ServeLimits(max_batch_chars=len(TEXT) * len(types) + 100, max_wait_ms=0)  # one text per batch
    whole, big, small, calls = _big_then_small({"text": [TEXT] * 4, "types": types}, limits)
    assert whole["timing"]["batches"] == 1
    assert big["timing"]["batches"] == 4 and big["results"] == whole["results"]  # same entities
    assert small["timing"]["batches"] == 1
    assert calls[:3] == [[TEXT], ["Paris."], [TEXT]]  # the small one alone, before the 2nd text


def test_a_long_text_is_served_chunk_by_chunk_and_a_small_request_goes_first():
    """A text the facade splits into chunks is served one chunk per batch (its own chunks, so the same
    entities and chunks as served whole), and a small request is served before its second chunk."""
    limits = ServeLimits(max_batch_chars=len(TEXT) * 2 + 50, max_wait_ms=0)  # one chunk per batch
    big = {"text": " ".join([TEXT] * 4), "types": ["person", "location"]}
    whole, served, small, calls = _big_then_small(big, limits, max_chunk_tokens=48)
    [result] = whole["results"]
    assert result["chunks"] == [[i * (len(TEXT) + 1), (i + 1) * len(TEXT) + i] for i in range(4)]
    assert served["timing"]["batches"] == 4 and served["results"] == whole["results"]
    assert small["timing"]["batches"] == 1
    assert calls[:3] == [[TEXT], ["Paris."], [TEXT]]


def test_the_request_with_least_left_goes_first_and_a_passed_over_one_goes_first_after_two_batches():
    from rait.serve.batcher import MAX_PASSED, Batcher, _Job

    def job(*texts: str) -> _Job:
        made = _Job(list(texts), [("person",)] * len(texts), "none", None, None)
        made.cut()
        return made

    batcher = Batcher(None, max_batch=4, max_batch_chars=100)
    active = [job("b" * 60, "B" * 60)]  # 120 characters x types left
    batches = []
    for small in ("s" * 50, "t" * 50, "u" * 50, "v" * 50):  # a stream of smaller requests, one per batch
        active.append(job(small))
        batches.append([piece.chars[0] for piece in batcher._take(active)])
        active = [j for j in active if j.pieces]
    assert MAX_PASSED == 2 and batches == [["s"], ["t"], ["b"], ["u", "v"]]

    batcher = Batcher(None, max_batch=4, max_batch_chars=400)  # room for all, but the big text waits
    active = [job("b" * 200), job("s" * 20, "t" * 20)]
    assert [piece.chars[0] for piece in batcher._take(active)] == ["s", "t"]
    assert [piece.chars[0] for piece in batcher._take(active)] == ["b"]


def test_bodies_that_are_not_utf8_or_nested_too_deeply_are_422(server):
    base, _ = server
    for content, words in (
        (b'{"text": "Jos\xe9", "types": ["person"]}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ):
        response = httpx.post(
            f"{base}/v1/extract", content=content, headers={"content-type": "application/json"}, timeout=60
        )
        assert response.status_code == 422 and response.json()["field"] == "body", response.text
        assert words in response.json()["error"]


def test_no_cdn_docs_page_and_a_loopback_server_checks_the_host_header():
    from rait.serve import default_allowed_hosts

    predictor = lookup_predictor(KNOWN, max_new_tokens=16)
    with running_server(NER(predictor), allowed_hosts=default_allowed_hosts("127.0.0.1")) as base:
        port = base.rsplit(":", 1)[1]
        docs = httpx.get(f"{base}/docs")
        schema = httpx.get(f"{base}/openapi.json")
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert httpx.get(f"{base}/health", headers={"host": host}).status_code == 200, host
        rebound = httpx.get(f"{base}/health", headers={"host": f"attacker.example:{port}"})
    assert docs.status_code == 404 and "/v1/extract" in schema.json()["paths"]
    assert rebound.status_code == 400 and rebound.json()["field"] == "host"
    assert "attacker.example" in rebound.json()["error"]
    assert default_allowed_hosts("0.0.0.0") is None


def test_cli_serves_a_tiny_model_and_sigterm_drains_in_flight_requests(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "rait",
        "serve",
        str(model),
        "--port",
        str(port),
        "--max-new-tokens",
        "48",
        "--decoding",  # the random model's answers run on (constrained ones end at its first loop): slow
        "free",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is None and httpx.get(f"{base}/health").status_code == 200, "no server"
        )
        assert httpx.get(f"{base}/v1/info").json()["model"] == model.name  # not the server's folders
        outcome: dict = {}

        def slow_request() -> None:
            body = {"text": [TEXT] * 8, "types": ["person", "location", "award", "date"]}
            outcome["response"] = post(base, body, timeout=DEADLINE_S)
            outcome["done"] = time.monotonic()

        client = threading.Thread(target=slow_request)
        client.start()
        wait_until(lambda: _pending(base) == 8 or not client.is_alive(), "the request did not start")
        outcome["sigterm"] = time.monotonic()
        process.send_signal(signal.SIGTERM)
        client.join(DEADLINE_S)
        output, _ = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert outcome["response"].status_code == 200, output
    results = outcome["response"].json()["results"]
    assert len(results) == 8 and all(isinstance(r["entities"], list) for r in results)
    assert outcome["done"] > outcome["sigterm"]  # it was answered after the signal: drained, not cut
    assert process.returncode == 0, output
    assert "Shutting down" in output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-batch", "0"], ["--max-batch must be at least 1"]),
        (["--max-wait-ms", "-1"], ["--max-wait-ms"]),
        ([], ["/nonexistent/model"]),
        (["--port", "99999"], ["--port must be 1 to 65535"]),  # checked before the model is loaded
        (["--port", "{busy}"], ["cannot listen on 127.0.0.1:{busy}"]),
    ],
)
def test_cli_bad_options_are_one_line_errors(monkeypatch, capsys, args, words):
    from rait.cli import main

    busy = free_socket()  # bound: a port in use
    busy.listen()
    args = [arg.format(busy=busy.getsockname()[1]) for arg in args]
    words = [word.format(busy=busy.getsockname()[1]) for word in words]
    monkeypatch.setattr(sys, "argv", ["rait", "serve", "/nonexistent/model", *args])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exc:
        main()
    busy.close()
    output = capsys.readouterr()
    lines = [line for line in (output.out + output.err).splitlines() if line.strip()]
    assert exc.value.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(word in lines[0] for word in words), lines


# ------------------------------------------------------------------------------- the web page in a browser


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (no extra Python packages)."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def pipes() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            high_r, high_w = os.dup2(to_browser_r, 200), os.dup2(from_browser_w, 201)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"]
        self.process = subprocess.Popen(
            [binary, *flags, f"--user-data-dir={profile}", "--window-size=1100,900", "about:blank"],
            preexec_fn=pipes,
            pass_fds=(3, 4),  # kept open in the child after preexec_fn ran
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self.session = None

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return reply["result"]
            ready, _, _ = select.select([self._from_browser], [], [], 1.0)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise AssertionError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raise AssertionError(f"no reply to {method}")

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self.session = attached["sessionId"]

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def close(self) -> None:
        self.process.kill()
        self.process.wait(DEADLINE_S)
        os.close(self._to_browser)
        os.close(self._from_browser)


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("headless browser test needs Debian's chromium package (apt-get install chromium)")
    return binary


MARKS = "[...document.querySelectorAll('#passage mark')].map(m => [m.textContent, m.dataset.type])"
EMOJI = "😀🎉 Marie Curie moved to Paris."


def test_web_page_highlights_entities_in_chromium(server, tmp_path):
    base, _ = server
    browser = Chromium(chromium_binary(), tmp_path / "profile")
    try:
        browser.open(f"{base}/")
        wait_until(lambda: browser.eval("!document.getElementById('run').disabled"), "page did not load")
        browser.eval(
            f"document.getElementById('text').value = {json.dumps(TEXT)};"
            "document.getElementById('types').value = 'person, location, award';"
            "document.getElementById('run').click();"
        )
        wait_until(lambda: browser.eval("document.querySelectorAll('#passage mark').length") == 3, "no marks")
        marks = browser.eval(MARKS)
        rows = browser.eval(
            "[...document.querySelectorAll('#entities tbody tr')].map(r => r.cells[2].textContent)"
        )
        passage = browser.eval("document.getElementById('passage').textContent")
        shot = browser.send("Page.captureScreenshot", {"format": "png"})["data"]
        browser.eval(f"document.getElementById('text').value = {json.dumps(EMOJI)};")
        browser.eval("document.getElementById('run').click();")
        wait_until(lambda: browser.eval(MARKS) == [["Marie Curie", "person"], ["Paris", "location"]], "emoji")
        emoji_passage = browser.eval("document.getElementById('passage').textContent")
    finally:
        browser.close()
    assert marks == [["Marie Curie", "person"], ["Paris", "location"], ["Nobel Prize in Physics", "award"]]
    assert rows == ["0", "21", "53"]
    assert passage == TEXT  # the highlighted passage is the text, unchanged
    assert emoji_passage == EMOJI  # offsets count code points: the marks after the emoji are right
    target = Path(os.environ.get("RAIT_SCREENSHOT_DIR", tmp_path)) / "serve_page.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot))
