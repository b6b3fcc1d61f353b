"""How often a text's answers depend on the other texts of its batch, per precision.

Each of the bundled sample passages (``src/rait/resources/sample/en_{train,test}.jsonl``, with their own
types: the file's, else its mentions') is asked once alone (``NER.predict_entities``) and once inside one
batch of all of them (``NER.batch_predict_entities``); a text counts as batch-dependent when its entities
differ. Prints the counts and writes ``results/serving/batch_dependence.json``. It counts answers, not time,
so it needs no quiet machine.

    python benchmarks/bench_batch_dependence.py                 # the built-in model, bf16 and fp32
"""

from __future__ import annotations

import argparse
import platform
from importlib.resources import files
from pathlib import Path

import torch

from rait.api import NER
from rait.fileio import read_jsonl, write_json
from rait.records import Record


def sample_passages() -> list[dict]:
    folder = Path(str(files("rait") / "resources" / "sample"))
    return [row for name in ("en_train.jsonl", "en_test.jsonl") for _, row in read_jsonl(folder / name)]


def measure(model: str | None, precision: str, rows: list[dict]) -> dict:
    ner = NER.from_pretrained(model, precision=precision)
    records = [Record.from_dict(row) for row in rows]
    texts, types = [r.text for r in records], [r.query_types() for r in records]
    alone = [ner.predict_entities(text, text_types) for text, text_types in zip(texts, types, strict=True)]
    together = ner.batch_predict_entities(texts, types, batch_size=len(texts))
    differ = [i for i, (a, b) in enumerate(zip(alone, together, strict=True)) if a != b]
    return {
        "precision": precision,
        "texts": len(texts),
        "questions": sum(len(t) for t in types),
        "texts_differing": len(differ),
        "differing_ids": [rows[i]["id"] for i in differ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model or adapter [default: the built-in model]")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--output", default="results/serving/batch_dependence.json")
    args = parser.parse_args()
    rows = sample_passages()
    runs = []
    for precision in args.precisions.split(","):
        run = measure(args.model, precision, rows)
        print(
            f"{precision}: {run['texts_differing']} of {run['texts']} texts answered differently alone and "
            f"in one batch of {run['texts']}"
        )
        runs.append(run)
    machine = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    write_json(args.output, {"model": args.model or "built-in", "machine": machine, "runs": runs})


if __name__ == "__main__":
    main()
