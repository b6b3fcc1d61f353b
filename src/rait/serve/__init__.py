"""``rait serve``: an HTTP API over :class:`rait.api.NER` with request batching, and a web page to try it.

Needs the ``serve`` extra (``pip install -e '.[serve]'``: FastAPI and uvicorn). See docs/serving.md."""

from __future__ import annotations

import signal
import threading

from rait.errors import RaitError


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise RaitError("rait serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None


def run_server(
    ner,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits=None,
    info: dict | None = None,
    drain_seconds: float = 30.0,
    sock=None,
) -> None:
    """Serve ``ner`` until SIGINT/SIGTERM; on either, stop accepting connections, let in-flight requests
    finish (at most ``drain_seconds``) and return. ``sock``: an already bound socket to serve on."""
    _require_extra()
    import uvicorn

    from rait.serve.app import ServeLimits, create_app

    app = create_app(ner, limits or ServeLimits(), info)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", timeout_graceful_shutdown=drain_seconds, access_log=False
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGINT/SIGTERM to the previous handlers after draining: make that a clean exit
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
