"""What the repetition rule saves: the same passages answered with ``stop_repetition`` on and off, one after
the other in one process (order alternated per round), greedily, with the same cap.

    python benchmarks/bench_repetition_stop.py [--benchmark crossner_ai] [--n 10] [--cap 256]
        [--model smollm2-135m] [--adapter DIR] [--rounds 2] [--output results/bench_repetition_stop.json]

Reported per setting: seconds (best of the rounds), generated tokens, answers that hit the cap, answers
stopped in a loop, and how many answers are identical between the settings (an answer the rule stops is
a prefix of the one decoded to the cap). Needs the shared data."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from rait.answers import finish_reason
    from rait.data.benchmarks import get_spec, load_benchmark
    from rait.inference import PassageQuery, load_predictor

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--benchmark", default="crossner_ai")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--cap", type=int, default=256)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench_repetition_stop.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = load_benchmark(args.benchmark, "test", max_examples=args.n, seed=42)
    lang = get_spec(args.benchmark).lang
    queries = [PassageQuery(r.text, tuple(r.query_types()), (), lang) for r in records]
    predictor = load_predictor(
        args.model, adapter=args.adapter, lang=lang, max_new_tokens=args.cap, precision="fp32"
    )
    tokenizer = predictor.tokenizer
    results: dict[str, dict] = {}
    answers: dict[str, list[str]] = {}
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for stop in order:
            predictor.stop_repetition = stop
            started = time.perf_counter()
            flat = [a for passage in predictor.answer_many(queries) for a in passage]
            seconds = time.perf_counter() - started
            key = "stop_repetition" if stop else "cap_only"
            tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in flat)
            row = results.setdefault(key, {"seconds": []})
            row["seconds"].append(round(seconds, 2))
            row |= {
                "answers": len(flat),
                "answer_tokens": tokens,
                "hit_cap": sum(finish_reason(a) == "length" for a in flat),
                "looped": sum(finish_reason(a) == "repetition" for a in flat),
            }
            answers[key] = flat
    same = sum(a == b for a, b in zip(answers["stop_repetition"], answers["cap_only"], strict=True))
    prefix = sum(
        b.startswith(a) for a, b in zip(answers["stop_repetition"], answers["cap_only"], strict=True)
    )
    report = {
        "benchmark": args.benchmark,
        "passages": len(records),
        "cap": args.cap,
        "model": args.model,
        "adapter": args.adapter,
        "settings": results,
        "identical_answers": same,
        "stopped_answer_is_prefix": prefix,
    }
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
