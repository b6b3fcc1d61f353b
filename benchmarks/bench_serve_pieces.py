"""Head-of-line blocking in `rait serve`: how long a one-sentence request waits behind a big one.

For each mode it starts ``rait serve MODEL`` (the built-in model unless ``--model``) on a free loopback
port, sends a warm-up request, then a big request (``--big-chars`` characters of the bundled English sample
passages x 8 types) and, ``--delay`` seconds later, a one-sentence request with 2 types, and times both.
``pieces``: the server's scheduling (a long text is served chunk by chunk, other requests go between them;
serve's defaults); ``pieces-N``: the same with ``--max-chunk-tokens N`` (``--chunk-tokens``; smaller chunks,
other answers); ``whole``: ``--max-batch-chars`` so large that all of a request goes in one batch, as before
pieces existed. The modes alternate for ``--rounds`` rounds; each records the big request's batches.

    python benchmarks/bench_serve_pieces.py --rounds 1

Prints a table and writes ``results/serving/bench_serve_pieces.json``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import REQUEST_TIMEOUT_S, free_port, sample_requests, wait_until_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WHOLE_CHARS = 10**9  # --max-batch-chars that never splits a request
BIG_TYPES = ["person", "organization", "location", "date", "event", "product", "award", "country"]
SMALL = {"text": "Marie Curie moved to Paris.", "types": ["person", "location"]}


def start(args, options: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "rait",
        "serve",
        *([args.model] if args.model else []),
        "--port",
        str(port),
        *options,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return process, wait_until_up(process, port, log)


def big_request(chars: int) -> dict:
    text = ""
    for body in sample_requests() * 100:
        if len(text) >= chars:
            break
        text += body["text"] + " "
    return {"text": text[:chars].rsplit(" ", 1)[0], "types": BIG_TYPES}


def timed(base: str, body: dict, out: dict, key: str) -> None:
    start = time.perf_counter()
    response = httpx.post(f"{base}/v1/extract", json=body, timeout=REQUEST_TIMEOUT_S)
    out[key] = {"seconds": time.perf_counter() - start, "status": response.status_code}
    if response.status_code == 200:
        out[key]["batches"] = response.json()["timing"]["batches"]


def modes(args) -> dict[str, list[str]]:
    """Each mode's ``rait serve`` options."""
    return {
        "pieces": [],
        f"pieces-{args.chunk_tokens}": ["--max-chunk-tokens", str(args.chunk_tokens)],
        "whole": ["--max-batch-chars", str(WHOLE_CHARS)],
    }


def one_round(args, mode: str, options: list[str]) -> dict:
    log = Path(tempfile.gettempdir()) / f"bench_serve_pieces_{mode}.log"  # the server's output
    process, base = start(args, options, log)
    try:
        timed(base, SMALL, {}, "warm-up")
        out: dict = {}
        big = threading.Thread(target=timed, args=(base, big_request(args.big_chars), out, "big"))
        big.start()
        time.sleep(args.delay)
        timed(base, SMALL, out, "small")
        big.join()
        return out
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model for rait serve [default: the built-in model]")
    parser.add_argument("--big-chars", type=int, default=5000)
    parser.add_argument(
        "--delay", type=float, default=1.0, help="seconds between the big and the small request"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--chunk-tokens", type=int, default=256, help="--max-chunk-tokens of pieces-N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "serving" / "bench_serve_pieces.json"))
    args = parser.parse_args()
    (ROOT / "results" / "serving").mkdir(parents=True, exist_ok=True)
    rounds = [
        {mode: one_round(args, mode, options) for mode, options in modes(args).items()}
        for _ in range(args.rounds)
    ]
    print("| round | mode | small request (s) | big request (s) | its batches |\n|---|---|---:|---:|---:|")
    for i, found in enumerate(rounds, 1):
        for mode, out in found.items():
            small, big = out["small"], out["big"]
            print(f"| {i} | {mode} | {small['seconds']:.2f} | {big['seconds']:.2f} | {big.get('batches')} |")
    command = "python benchmarks/bench_serve_pieces.py " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "big_chars": args.big_chars,
        "delay_s": args.delay,
        "rounds": rounds,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
