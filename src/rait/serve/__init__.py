"""``rait serve``: an HTTP API over :class:`rait.api.NER` with request batching, and a web page to try it.

Needs the ``serve`` extra (``pip install -e '.[serve]'``: FastAPI and uvicorn). See docs/serving.md."""

from __future__ import annotations

import signal
import socket
import threading

from rait.errors import RaitError

DEFAULT_MAX_BATCH_CHARS = 16_000  # characters x types in one predictor batch


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise RaitError("rait serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (RaitError naming them when that fails)."""
    if not 1 <= port <= 65535:
        raise RaitError(f"--port must be 1 to 65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise RaitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise RaitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def default_allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The ``Host`` names a server bound to ``host`` accepts by default: the loopback names when it is
    bound to a loopback address (so a web page cannot reach it by DNS rebinding), else any (``None``)."""
    from rait.serve.app import LOOPBACK_HOSTS

    return LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else None


def run_server(
    ner,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits=None,
    info: dict | None = None,
    drain_seconds: float = 30.0,
    sock=None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> None:
    """Serve ``ner`` until SIGINT/SIGTERM; on either, stop accepting connections, let in-flight requests
    finish (at most ``drain_seconds``) and return. ``sock``: an already bound socket to serve on.
    ``allowed_hosts``: the ``Host`` header names accepted (default: :func:`default_allowed_hosts`)."""
    _require_extra()
    import uvicorn

    from rait.serve.app import ServeLimits, create_app

    allowed = default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts
    app = create_app(ner, limits or ServeLimits(), info, allowed)
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
