"""Chunking a 10 MB one-line passage with SmolLM2-135M's tokenizer: time, chunks, peak memory (no model run).

    python benchmarks/bench_chunking.py                  # both variants, each in its own process

Variants: ``sentences`` (the bundled English training samples repeated: sentence punctuation) and
``no-punctuation`` (the same text with . ! ? ; turned into commas: one 10 MB sentence, cut into windows).
Prints one JSON line per variant and writes ``results/chunking/bench_chunking.json``."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("sentences", "no-punctuation")


def measure(variant: str, chars: int, budget: int) -> dict:
    from rait.inference.chunking import chunk_spans
    from rait.models import load_tokenizer

    tokenizer = load_tokenizer(None)
    lines = (
        resources.files("rait").joinpath("resources/sample/en_train.jsonl").read_text("utf-8").splitlines()
    )
    unit = " ".join(json.loads(line)["text"] for line in lines if line.strip()) + " "
    if variant == "no-punctuation":
        for mark in ".!?;":
            unit = unit.replace(mark, ",")
    text = (unit * (chars // len(unit) + 1))[:chars]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    spans = chunk_spans(text, tokenizer, budget)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sample = [len(tokenizer(text[s:e], add_special_tokens=False)["input_ids"]) for s, e in spans[:200]]
    return {
        "variant": variant,
        "chars": len(text),
        "budget_tokens": budget,
        "chunks": len(spans),
        "seconds": round(seconds, 1),
        "peak_rss_mib_before": round(before),
        "peak_rss_mib_after": round(peak),
        "max_tokens_of_first_200_chunks": max(sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help="measure one variant in this process")
    parser.add_argument("--chars", type=int, default=10_000_000)
    parser.add_argument("--budget", type=int, default=1024, help="chunk budget in tokens")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "chunking" / "bench_chunking.json")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.chars, args.budget)))
        return
    results = []
    for variant in VARIANTS:  # a process each, so that peak memory is the variant's own
        command = [sys.executable, __file__, "--variant", variant, "--chars", str(args.chars)]
        output = subprocess.run(
            [*command, "--budget", str(args.budget)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
