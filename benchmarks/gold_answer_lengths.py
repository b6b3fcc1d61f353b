"""Gold answer lengths in tokens: how short a decoding cap (``max_new_tokens``) may be without cutting gold
answers. For every registered benchmark whose data is here, every (test passage, queried type) gold answer
is written as the model is trained to write it (:func:`rait.templates.format_answer`, a JSON list) and
tokenized alone, as :func:`rait.chat.encode_for_training` tokenizes assistant content; the end-of-turn token
is not counted.

    python benchmarks/gold_answer_lengths.py [--tokenizer smollm2-135m ...] [--benchmarks NAME ...]
        [--max-share 0.005] [--output results/gold_answer_lengths.json]

Per tokenizer and benchmark it prints the number of answers, the longest, the 99.5th percentile, how many
exceed 64/128/256 tokens, the smallest cap that cuts at most ``--max-share`` of the answers (the cap
needed overall is the largest of those), and how many gold answers the repetition rule
(:func:`rait.inference.stopping.repeats_itself`) would stop (it should be none). ``--tokenizer`` takes
anything :func:`rait.models.load_tokenizer` does (a name, a model directory, a Hub id where the Hub is
reachable). Needs the shared data."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (64, 128, 256)


def smallest_cap(lengths: list[int], max_share: float) -> int:
    """The smallest cap ``c`` with at most ``floor(max_share * n)`` of ``lengths`` longer than ``c``."""
    ordered = sorted(lengths)
    allowed = math.floor(max_share * len(ordered))
    return ordered[len(ordered) - allowed - 1]


def answer_ids(tokenizer, name: str) -> list[list[int]]:
    """Token ids of every gold answer of a benchmark's whole test split."""
    from rait.answers import format_answer
    from rait.data.benchmarks import load_benchmark

    answers = [
        format_answer(record.answers(entity_type))
        for record in load_benchmark(name, "test", max_examples=None)
        for entity_type in record.query_types()
    ]
    return tokenizer(answers, add_special_tokens=False)["input_ids"]


def main() -> None:
    from rait.data.benchmarks import BENCHMARKS, is_available
    from rait.inference.stopping import loop_end
    from rait.models import load_tokenizer

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenizer", nargs="+", default=["smollm2-135m"])
    parser.add_argument("--benchmarks", nargs="+", default=None)
    parser.add_argument("--max-share", type=float, default=0.005)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "gold_answer_lengths.json")
    args = parser.parse_args()
    names = args.benchmarks or [name for name in BENCHMARKS if is_available(name)]
    console = Console(width=120)
    report: dict = {"max_share": args.max_share, "tokenizers": {}}
    for tokenizer_name in args.tokenizer:
        tokenizer = load_tokenizer(tokenizer_name)
        table = Table(title=f"gold answer tokens, tokenizer {tokenizer_name}")
        columns = ("benchmark", "answers", "max", "p99.5", *(f"> {t}" for t in THRESHOLDS), "cap", "looping")
        for column in columns:
            table.add_column(column, justify="left" if column == "benchmark" else "right")
        rows = {}
        for name in names:
            ids = answer_ids(tokenizer, name)
            lengths = [len(answer) for answer in ids]
            ordered = sorted(lengths)
            row = {
                "answers": len(lengths),
                "max": ordered[-1],
                "p99.5": ordered[math.ceil(0.995 * len(ordered)) - 1],
                **{f"over_{t}": sum(n > t for n in lengths) for t in THRESHOLDS},
                "cap": smallest_cap(lengths, args.max_share),
                "looping": sum(loop_end(answer) is not None for answer in ids),
            }
            rows[name] = row
            table.add_row(name, *(str(v) for v in row.values()))
        needed = max(row["cap"] for row in rows.values())
        report["tokenizers"][tokenizer_name] = {"benchmarks": rows, "cap_needed": needed}
        console.print(table)
        console.print(
            f"{tokenizer_name}: a cap of {needed} tokens cuts at most {args.max_share:.1%} of every "
            "benchmark's gold answers"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {args.output}")


if __name__ == "__main__":
    main()
