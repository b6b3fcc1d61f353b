"""Load test of `rait serve` on 127.0.0.1: throughput, latency, errors, memory; batching vs one at a time.

For each mode (``batched``: ``--max-batch``/``--max-wait-ms``; ``one-at-a-time``: max batch 1, no wait) it
starts ``rait serve MODEL`` on a free loopback port, sends one warm-up request, then ``--clients`` concurrent
clients each send ``--requests`` requests back to back (a sample passage and its types, cycling through
the bundled English test samples) and stop. The server's resident memory is read from /proc before and
after the load. The modes alternate for ``--rounds`` rounds so that a shared CPU affects both alike.

    python benchmarks/bench_serve.py                         # SmolLM2-135M, 8 clients x 50 requests
    python benchmarks/bench_serve.py --clients 4 --requests 10 --rounds 1

Prints a table and writes ``results/serving/bench_serve.json``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 600


def sample_requests() -> list[dict]:
    """Request bodies from the bundled English test samples (passage and its types)."""
    lines = resources.files("rait").joinpath("resources/sample/en_test.jsonl").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [{"text": row["text"], "types": row["types"]} for row in rows]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(args, max_batch: int, max_wait_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "rait", "serve", *([args.model] if args.model else [])]
    command += ["--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--decoding", args.decoding]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return process, wait_until_up(process, port, log)


def wait_until_up(process: subprocess.Popen, port: int, log: Path) -> str:
    """The base URL once ``/health`` answers; RuntimeError naming ``log`` if it exits or times out."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not start within {START_TIMEOUT_S} s; see {log}")


def run_load(base: str, bodies: list[dict], clients: int, requests: int) -> dict:
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for n in range(requests):
                body = bodies[(index * requests + n) % len(bodies)]
                started = time.perf_counter()
                try:
                    response = http.post(f"{base}/v1/extract", json=body)
                    ok = response.status_code == 200
                    detail = "" if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        batch_sizes.append(response.json()["timing"]["batch_texts"])
                    else:
                        errors.append(detail)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": clients * requests,
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 3),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)
        if ordered
        else None,
        "mean_batch_texts": round(statistics.mean(batch_sizes), 2) if batch_sizes else None,
    }


def measure(args, mode: str, bodies: list[dict], round_index: int) -> dict:
    max_batch, max_wait = (args.max_batch, args.max_wait_ms) if mode == "batched" else (1, 0)
    log = args.out.parent / f"bench_serve_{mode}_{round_index}.log"
    process, base = start_server(args, max_batch, max_wait, log)
    try:
        httpx.post(
            f"{base}/v1/extract", json=bodies[0], timeout=REQUEST_TIMEOUT_S
        ).raise_for_status()  # warm-up
        rss_start = rss_mib(process.pid)
        result = run_load(base, bodies, args.clients, args.requests)
        result |= {"rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_mib(process.pid), 1)}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    result |= {"mode": mode, "round": round_index, "max_batch": max_batch, "max_wait_ms": max_wait}
    return result


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model for rait serve [default: smollm2-135m]")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both modes")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--decoding", default="constrained")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--modes", default="batched,one-at-a-time")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serving" / "bench_serve.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bodies = sample_requests()
    runs = []
    for round_index in range(args.rounds):
        for mode in args.modes.split(","):
            run = measure(args, mode, bodies, round_index)
            runs.append(run)
            print(
                f"{mode:>14} round {round_index}: {run['ok']}/{run['requests']} ok, {run['errors']} errors, "
                f"{run['throughput_rps']:.2f} req/s, p50 {run['p50_ms']} ms, p95 {run['p95_ms']} ms, "
                f"mean batch {run['mean_batch_texts']} texts, RSS {run['rss_start_mib']} -> "
                f"{run['rss_end_mib']} MiB, {run['wall_s']} s",
                flush=True,
            )
    summary = {}
    by_mode = {mode: [r for r in runs if r["mode"] == mode] for mode in args.modes.split(",")}
    if by_mode.get("batched") and by_mode.get("one-at-a-time"):
        ratios = [
            b["throughput_rps"] / s["throughput_rps"]
            for b, s in zip(by_mode["batched"], by_mode["one-at-a-time"], strict=True)
            if s["throughput_rps"]
        ]
        summary["speedup_batched_over_one_at_a_time"] = [round(r, 2) for r in ratios]
        print(f"speed-up of batching (throughput ratio per round): {', '.join(f'{r:.2f}x' for r in ratios)}")
    settings = {k: _relative(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"settings": settings, "runs": runs, **summary}, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
