"""Inference benchmark: the prefix-reusing, batched predictor against the naive path (whole prompt encoded
and decoded alone for every type), on CrossNER-AI test sentences (13 types each), with k=0 and k=2
in-context examples.

    python benchmarks/bench_predict.py [--n 100] [--k 0 2] [--model smollm2-135m] [--adapter DIR]
        [--examples-from crossner_ai|pile_ner_subset] [--naive-n N] [--threads T]
        [--output results/bench_predict.json]

Examples for k>0 are retrieved once, before timing: ``crossner_ai`` = the k nearest sentences of the
CrossNER-AI train split (in-domain); any other value is a training source (e.g. ``pile_ner_subset``) whose
k nearest passages are kept when their BM25 score reaches 20 (out-domain). Each (k, path) then runs in a
fresh process that loads the model and answers the same queries greedily, so timings and memory do not
leak between runs. Reported: passages/s, (passage, type) queries/s, the speed-up, how many answers are
identical, and resident memory (model loaded, and peak while answering, sampled every 10 ms).
``--naive-n`` runs the naive path on the first N passages only (it is slow). Needs the shared data.

    python benchmarks/bench_predict.py --compare-decoding [--benchmarks B ...] [--n 30] [--adapter DIR]
        [--max-new-tokens 48] [--batch-size 32] [--output results/bench_decoding.json]

compares free and copy-constrained decoding (``rait.constrained``) of the fast path on the replication's
evaluation workload (``--n`` seeded test sentences of each benchmark, k=0), one fresh process per decoding:
seconds, generated tokens (answer tokens plus the end token where one was generated) and seconds per
token, the time spent inside the constraint, F1 (UniversalNER protocol), unparseable answers, predicted
mentions not in the passage, and how many of the free answers that were already well formed (a JSON list of
distinct passage substrings) constrained decoding left identical."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "results" / "bench_predict.json"
REPLICATION_BENCHMARKS = ("crossner_ai", "crossner_literature", "crossner_music", "crossner_politics",
                          "crossner_science", "mit_movie", "mit_restaurant")  # fmt: skip
console = Console()


class PeakRSS:
    """Peak resident set size (MiB) of this process while the ``with`` block runs."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def worker(args: argparse.Namespace) -> None:
    """Load the model, answer the queries of ``--queries`` with one path, write timings and answers."""
    import torch

    from rait.models import load_model
    from rait.predict import PassageQuery, Predictor
    from rait.records import Record

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = json.loads(Path(args.queries).read_text(encoding="utf-8"))
    queries = [
        PassageQuery(r["text"], tuple(r["types"]), tuple(Record.from_dict(e) for e in r["examples"]), "en")
        for r in rows
    ]
    model, tokenizer = load_model(args.model, adapter=args.adapter, device="cpu")
    predictor = Predictor(
        model,
        tokenizer,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        decoding=args.decoding,
    )
    counters = instrument_decoding(predictor)
    with PeakRSS() as memory:
        started = time.perf_counter()
        if args.worker == "fast":
            answers = predictor.answer_many(queries)
        else:
            answers = [predictor.answer_naive(q.text, q.types, q.examples, q.lang) for q in queries]
        seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "rss_model_loaded_mib": round(memory.start, 1),
        "peak_rss_mib": round(memory.peak, 1),
        "torch_threads": torch.get_num_threads(),
        "answers": answers,
        **counters,
    }
    Path(args.worker_output).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def instrument_decoding(predictor) -> dict:
    """Count generated tokens, time the model's one-token decoding steps (and count their rows) and the
    constraint's work (its per-step selection and per-passage set-up) while ``predictor`` answers; the
    vocabulary trie, built once per tokenizer, is built here, timed apart."""
    from rait.constrained import ConstrainedRows, TokenVocab

    counters = {
        "generated_tokens": 0,
        "constraint_seconds": 0.0,
        "vocab_build_seconds": 0.0,
        "step_seconds": 0.0,
        "step_rows": 0,
    }
    if predictor.decoding == "constrained":
        started = time.perf_counter()
        predictor._vocab = TokenVocab(predictor.tokenizer, predictor.stop_ids)
        counters["vocab_build_seconds"] = time.perf_counter() - started

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                counters["constraint_seconds"] += time.perf_counter() - started

        return wrapper

    ConstrainedRows.select = timed(ConstrainedRows.select)
    predictor._constraint_rows = timed(predictor._constraint_rows)
    greedy = predictor._greedy

    def counting(*args, **kwargs):
        outputs = greedy(*args, **kwargs)
        counters["generated_tokens"] += sum(min(len(out) + 1, predictor.max_new_tokens) for out in outputs)
        return outputs

    predictor._greedy = counting
    forward = predictor._forward

    def timed_forward(ids, *args):
        started = time.perf_counter()
        logits = forward(ids, *args)
        if ids.shape[1] == 1:
            counters["step_seconds"] += time.perf_counter() - started
            counters["step_rows"] += ids.shape[0]
        return logits

    predictor._forward = timed_forward
    return counters


def build_queries(args: argparse.Namespace, k: int) -> list[dict]:
    from rait.benchmarks import load_benchmark
    from rait.predict import Retriever
    from rait.retrieval import ExamplePool

    records = load_benchmark("crossner_ai", "test", max_examples=args.n, seed=args.seed)
    shown: list[list] = [[] for _ in records]
    if k:
        if args.examples_from == "crossner_ai":
            pool, threshold = ExamplePool.from_benchmark("crossner_ai", None, seed=args.seed), None
        else:
            pool, threshold = ExamplePool.from_source(args.examples_from), 20.0
        shown = Retriever(pool, k=k, bm25_threshold=threshold, seed=args.seed)(records)
    return [
        {"text": r.text, "types": r.types, "examples": [e.to_dict() for e in ex]}
        for r, ex in zip(records, shown, strict=True)
    ]


def run_worker(
    args: argparse.Namespace, path: str, queries: list[dict], tmp: Path, decoding: str = "free"
) -> dict:
    (tmp / "queries.json").write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    command = [sys.executable, __file__, "--worker", path, "--queries", str(tmp / "queries.json"),
               "--worker-output", str(tmp / "out.json"), "--max-new-tokens", str(args.max_new_tokens),
               "--batch-size", str(args.batch_size), "--decoding", decoding]  # fmt: skip
    for name in ("model", "adapter", "threads"):
        if getattr(args, name):
            command += [f"--{name}", str(getattr(args, name))]
    subprocess.run(command, check=True)
    return json.loads((tmp / "out.json").read_text(encoding="utf-8"))


def summary(result: dict, queries: list[dict]) -> dict:
    n_queries = sum(len(q["types"]) for q in queries)
    return {
        "passages": len(queries),
        "queries": n_queries,
        "seconds": round(result["seconds"], 2),
        "passages_per_s": len(queries) / result["seconds"],
        "queries_per_s": n_queries / result["seconds"],
        "rss_model_loaded_mib": result["rss_model_loaded_mib"],
        "peak_rss_mib": result["peak_rss_mib"],
    }


def run(args: argparse.Namespace) -> dict:
    model_name = (args.model or "smollm2-135m") + (f" + adapter {args.adapter}" if args.adapter else "")
    results = {
        "machine": {
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "config": {k: v for k, v in vars(args).items() if not k.startswith("worker") and k != "output"},
        "model": model_name,
        "runs": [],
    }
    table = Table(title=f"Inference, CrossNER-AI test sentences, {model_name}")
    for column in ("k", "path", "passages", "queries", "s", "passages/s", "queries/s", "RSS MiB", "speed-up"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.k:
            queries = build_queries(args, k)
            fast = run_worker(args, "fast", queries, Path(tmp))
            naive_queries = queries[: args.naive_n or len(queries)]
            naive = run_worker(args, "naive", naive_queries, Path(tmp))
            pairs = [
                (a, b)
                for fa, na in zip(fast["answers"][: len(naive_queries)], naive["answers"], strict=True)
                for a, b in zip(fa, na, strict=True)
            ]
            row = {
                "k": k,
                "passages_with_examples": sum(bool(q["examples"]) for q in queries),
                "fast": summary(fast, queries),
                "naive": summary(naive, naive_queries),
                "identical_answers": sum(a == b for a, b in pairs),
                "compared_answers": len(pairs),
                "mean_answer_chars": sum(len(a) for fa in fast["answers"] for a in fa)
                / sum(len(fa) for fa in fast["answers"]),
                "torch_threads": fast["torch_threads"],
            }
            row["speedup"] = row["fast"]["queries_per_s"] / row["naive"]["queries_per_s"]
            results["runs"].append(row)
            for path in ("fast", "naive"):
                r = row[path]
                table.add_row(
                    str(k),
                    "prefix reuse" if path == "fast" else "naive",
                    str(r["passages"]),
                    str(r["queries"]),
                    f"{r['seconds']:.1f}",
                    f"{r['passages_per_s']:.3f}",
                    f"{r['queries_per_s']:.2f}",
                    f"{r['rss_model_loaded_mib']:.0f} -> {r['peak_rss_mib']:.0f}",
                    f"{row['speedup']:.2f}x" if path == "fast" else "",
                )
            console.print(
                f"k={k}: {row['identical_answers']}/{row['compared_answers']} answers identical; "
                f"{row['passages_with_examples']} passages had examples",
                highlight=False,
            )
    results["machine"]["load_average_at_end"] = os.getloadavg()
    console.print(table)
    return results


def compare_decoding(args: argparse.Namespace) -> dict:
    """Free vs constrained decoding on ``args.benchmarks`` x ``args.n`` sentences (see the module doc)."""
    from rait.benchmarks import load_benchmark
    from rait.constrained import is_copy_answer
    from rait.evaluation import evaluate
    from rait.predict import answer_mentions, query_rows

    records = [
        r
        for name in args.benchmarks
        for r in load_benchmark(name, "test", max_examples=args.n, seed=args.seed)
    ]
    queries = [{"text": r.text, "types": r.query_types(), "examples": []} for r in records]
    model_name = (args.model or "smollm2-135m") + (f" + adapter {args.adapter}" if args.adapter else "")
    results = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "config": {k: v for k, v in vars(args).items() if not k.startswith("worker") and k != "output"},
        "model": model_name,
        "decodings": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for decoding in ("free", "constrained"):
            out = run_worker(args, "fast", queries, Path(tmp), decoding)
            rows = [
                row
                for r, ans in zip(records, out["answers"], strict=True)
                for row in query_rows(r, r.query_types(), ans)
            ]
            report = evaluate(rows)
            mentions = [(m, row.text) for row in rows for m in answer_mentions(row.output)[0]]
            results["decodings"][decoding] = {
                "seconds": out["seconds"],
                "generated_tokens": out["generated_tokens"],
                "seconds_per_token": out["seconds"] / out["generated_tokens"],
                "constraint_seconds": out["constraint_seconds"],
                "model_seconds_per_step_row": out["step_seconds"] / max(out["step_rows"], 1),
                "vocab_build_seconds": out["vocab_build_seconds"],
                "average_f1": report.average_f1,
                "f1": {name: score.f1 for name, score in report.benchmarks.items()},
                "queries": report.n_queries,
                "unparseable": report.n_unparseable,
                "mentions": len(mentions),
                "mentions_not_in_passage": sum(m not in text for m, text in mentions),
                "answers": [row.output for row in rows],
                "texts": [row.text for row in rows],
            }
    free, constrained = results["decodings"]["free"], results["decodings"]["constrained"]
    valid = [
        i for i, (a, t) in enumerate(zip(free["answers"], free["texts"], strict=True)) if is_copy_answer(a, t)
    ]
    results["free_well_formed"] = len(valid)
    results["identical_where_free_well_formed"] = sum(
        free["answers"][i] == constrained["answers"][i] for i in valid
    )
    results["wall_ratio"] = constrained["seconds"] / free["seconds"]
    # the constraint's time per generated token, over the model's time per row of a free decoding step
    results["per_token_overhead"] = (
        constrained["constraint_seconds"]
        / constrained["generated_tokens"]
        / free["model_seconds_per_step_row"]
    )
    results["machine"]["load_average_at_end"] = os.getloadavg()
    table = Table(title=f"Free vs constrained decoding, {len(records)} sentences, {model_name}")
    for column in (
        "decoding",
        "avg F1",
        "unparseable",
        "mentions",
        "not in passage",
        "s",
        "tokens",
        "ms/token",
    ):
        table.add_column(column, justify="right")
    for name, r in results["decodings"].items():
        table.add_row(
            name,
            f"{r['average_f1']:.2f}",
            f"{r['unparseable']}/{r['queries']}",
            str(r["mentions"]),
            str(r["mentions_not_in_passage"]),
            f"{r['seconds']:.1f}",
            str(r["generated_tokens"]),
            f"{1000 * r['seconds_per_token']:.2f}",
        )
    console.print(table)
    console.print(
        f"wall time constrained/free: {results['wall_ratio']:.3f}; per-token overhead of the constraint: "
        f"{100 * results['per_token_overhead']:.1f}% of a free decoding step's model time per row; "
        f"{results['identical_where_free_well_formed']}/{results['free_well_formed']} well-formed free "
        "answers unchanged",
        highlight=False,
    )
    for decoding in results["decodings"].values():
        del decoding["texts"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="CrossNER-AI test sentences (seeded sample)")
    parser.add_argument("--k", type=int, nargs="+", default=[0, 2], help="in-context examples per passage")
    parser.add_argument("--model", default=None, help="model [default: smollm2-135m]")
    parser.add_argument("--adapter", default=None, help="LoRA adapter dir (e.g. a quickstart adapter)")
    parser.add_argument(
        "--examples-from", default="crossner_ai", help="crossner_ai (train split) or a source"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--naive-n", type=int, default=None, help="run the naive path on N passages only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--compare-decoding", action="store_true", help="free vs constrained decoding")
    parser.add_argument("--benchmarks", nargs="+", default=list(REPLICATION_BENCHMARKS))
    parser.add_argument("--decoding", default="free", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["fast", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from rait.benchmarks import is_available
    from rait.fileio import write_json

    if not is_available("crossner_ai", "test"):
        raise SystemExit("CrossNER-AI is not available: set RAIT_DATA_DIR (see DEVELOPERS.md)")
    if args.compare_decoding:
        if args.output == DEFAULT_OUTPUT:
            args.output = ROOT / "results" / "bench_decoding.json"
        results = compare_decoding(args)
    else:
        results = run(args)
    write_json(args.output, results)
    console.print(f"written {args.output}", highlight=False)


if __name__ == "__main__":
    main()
