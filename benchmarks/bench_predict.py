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

compares free and copy-constrained decoding (``rait.inference.constrained``) of the fast path on the
replication's evaluation workload (``--n`` seeded test sentences of each benchmark, k=0), one fresh process
per decoding: seconds, generated tokens (answer tokens plus the end token where one was generated) and seconds
per token, the time spent inside the constraint, F1 (UniversalNER protocol), unparseable answers, predicted
mentions not in the passage, and how many of the free answers that were already well formed (a JSON list of
distinct passage substrings) constrained decoding left identical.

    python benchmarks/bench_predict.py --compare-scoring --adapter src/rait/resources/models/smollm2-ner-en
        [--benchmarks B ...] [--n 20] [--rounds 2] [--max-new-tokens 256]
        [--output results/bench_scoring.json]

measures what the confidence scores (``rait.inference.confidence``) cost: the same constrained-words decoding
with and without recording the choice-point probabilities (``--no-scores`` workers skip it), ``--rounds``
rounds in alternating order, each run in a fresh process, and the time to locate the entities and apply the
default threshold and one type per span; the answers must be identical. The choice-point token sets, built
once per tokenizer, are built before timing (``choice_tokens_build_seconds``).

``--workload replication`` measures precision instead, on the CPU-scale replication's evaluation workload
(configs/experiments/cpu_en_session.yaml: 7 English benchmarks x 30 test sentences, seed 42, no examples,
48 new tokens, batch 32, chunks of 32 passages) with a trained adapter:

    python benchmarks/bench_predict.py --workload replication --adapter DIR [--adapter-bf16 DIR]
        [--old-src ../h12-old/src] [--rounds 2] [--per-benchmark 30] [--variants NAME ...]

Variants: ``today_fp32`` (``--old-src``'s rait, fp32: the previous code and precision), ``fp32`` and
``bf16`` (this checkout, ``--precision fp32`` / ``bf16``), and with ``--adapter-bf16`` ``bf16_trained_bf16``
(that adapter, bf16 inference). Each variant runs in its own processes; the benchmarks are split into
``--rounds`` groups and each group runs every variant in alternating order, so a loaded machine slows all
alike. Timed: ``rait.inference.predict.predict_records`` (model loading excluded). Reported: passages/s, peak
RSS, UniversalNER micro-F1 per benchmark and their average, identical answers between variants, and a paired
bootstrap over sentences (2,000 resamples within each benchmark) of each F1 difference: the difference is
within the run's noise when its 95% interval contains 0."""

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
from collections.abc import Sequence
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

    from rait.inference import (
        DEFAULT_THRESHOLD,
        PassageQuery,
        Predictor,
        entities_from_answers,
        select_entities,
    )
    from rait.models import load_model
    from rait.records import Record

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_scores:  # the decoding loop as before confidence scores: nothing recorded at choice points
        from rait.inference.confidence import ChoiceRecorder

        ChoiceRecorder.observe = lambda self, row, token, logits: None
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
    started = time.perf_counter()  # the choice-point token sets, built once per tokenizer: timed apart
    predictor._choice_tokens()
    counters["choice_tokens_build_seconds"] = time.perf_counter() - started
    with PeakRSS() as memory:
        started = time.perf_counter()
        if args.worker == "fast":
            answers = predictor.answer_many(queries)
        else:
            answers = [predictor.answer_naive(q.text, q.types, q.examples, q.lang) for q in queries]
        seconds = time.perf_counter() - started
    started = time.perf_counter()  # locating the entities, then the default threshold and one type per span
    for query, passage in zip(queries, answers, strict=True):
        select_entities(entities_from_answers(query.text, query.types, passage)[0], DEFAULT_THRESHOLD)
    result = {
        "selection_seconds": time.perf_counter() - started,
        "seconds": seconds,
        "rss_model_loaded_mib": round(memory.start, 1),
        "peak_rss_mib": round(memory.peak, 1),
        "torch_threads": torch.get_num_threads(),
        "answers": answers,
        **counters,
    }
    Path(args.worker_output).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def instrument_decoding(predictor) -> dict:
    """Count generated tokens, time the model's decoding steps (and count their rows) and the
    constraint's work (its per-step selection and per-passage set-up) while ``predictor`` answers; the
    vocabulary trie, built once per tokenizer, is built here, timed apart."""
    from rait.inference.constrained import ConstrainedRows, TokenVocab
    from rait.inference.decoding import Decoder

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

    ConstrainedRows.choose = timed(ConstrainedRows.choose)
    predictor._constraint_rows = timed(predictor._constraint_rows)
    greedy = predictor._greedy

    def counting(*args, **kwargs):
        outputs = greedy(*args, **kwargs)
        counters["generated_tokens"] += sum(min(len(out) + 1, predictor.max_new_tokens) for out in outputs)
        return outputs

    predictor._greedy = counting
    run = Decoder.run

    def timed_run(decoder, *args, **kwargs):
        forward = decoder.forward

        def timed_forward(ids, *rest):
            started = time.perf_counter()
            logits = forward(ids, *rest)
            counters["step_seconds"] += time.perf_counter() - started
            counters["step_rows"] += ids.shape[0]
            return logits

        decoder.forward = timed_forward
        return run(decoder, *args, **kwargs)

    Decoder.run = timed_run
    return counters


def build_queries(args: argparse.Namespace, k: int) -> list[dict]:
    from rait.data.benchmarks import load_benchmark
    from rait.retrieval import Retriever
    from rait.retrieval.pool import ExamplePool

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
    args: argparse.Namespace,
    path: str,
    queries: list[dict],
    tmp: Path,
    decoding: str = "free",
    extra: Sequence[str] = (),
) -> dict:
    (tmp / "queries.json").write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    command = [sys.executable, __file__, "--worker", path, "--queries", str(tmp / "queries.json"),
               "--worker-output", str(tmp / "out.json"), "--max-new-tokens", str(args.max_new_tokens),
               "--batch-size", str(args.batch_size), "--decoding", decoding, *extra]  # fmt: skip
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
    from rait.data.benchmarks import load_benchmark
    from rait.evaluation import evaluate
    from rait.inference import answer_mentions, query_rows
    from rait.inference.constrained import is_copy_answer

    records = [
        r
        for name in args.benchmarks
        for r in load_benchmark(name, "test", max_examples=args.n, seed=args.seed)
    ]
    queries = [{"text": r.text, "types": r.query_types(), "examples": []} for r in records]
    model_name = (args.model or "smollm2-135m") + (f" + adapter {args.adapter}" if args.adapter else "")
    results = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "config": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if not k.startswith("worker") and k != "output"
        },
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
                "average_precision": report.average_precision,
                "average_recall": report.average_recall,
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


def compare_scoring(args: argparse.Namespace) -> dict:
    """Decoding with and without the confidence scores' bookkeeping (``--no-scores`` workers), on
    ``args.benchmarks`` x ``args.n`` sentences in constrained-words decoding, ``args.rounds`` rounds in
    alternating order, each in a fresh process; plus the time to locate the entities and apply the default
    threshold and one type per span (``selection_seconds``)."""
    from rait.data import load_benchmark

    records = [
        r
        for name in args.benchmarks
        for r in load_benchmark(name, "test", max_examples=args.n, seed=args.seed)
    ]
    queries = [{"text": r.text, "types": r.query_types(), "examples": []} for r in records]
    runs: dict[str, list[dict]] = {"without scores": [], "with scores": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for name in order:
                extra = ["--no-scores"] if name == "without scores" else []
                out = run_worker(args, "fast", queries, Path(tmp), "constrained-words", extra)
                keep = ("seconds", "selection_seconds", "generated_tokens", "choice_tokens_build_seconds")
                runs[name].append({k: out[k] for k in keep})
                runs[name][-1]["answers"] = [a for passage in out["answers"] for a in passage]
    same = runs["with scores"][0]["answers"] == runs["without scores"][0]["answers"]
    for found in runs.values():
        for run_ in found:
            del run_["answers"]
    seconds = {name: sum(r["seconds"] for r in found) for name, found in runs.items()}
    selection = sum(r["selection_seconds"] for r in runs["with scores"])
    results = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "model": (args.model or "built-in") + (f" + adapter {args.adapter}" if args.adapter else ""),
        "sentences": len(records),
        "queries": sum(len(q["types"]) for q in queries),
        "rounds": args.rounds,
        "runs": runs,
        "identical_answers": same,
        "decoding_ratio": seconds["with scores"] / seconds["without scores"],
        "selection_share": selection / seconds["with scores"],
    }
    results["total_ratio"] = (seconds["with scores"] + selection) / seconds["without scores"]
    console.print(
        f"{len(records)} sentences x {args.rounds} rounds: decoding {seconds['without scores']:.1f} s "
        f"without scores, {seconds['with scores']:.1f} s with (x{results['decoding_ratio']:.3f}); selection "
        f"{selection:.2f} s; total x{results['total_ratio']:.3f}; answers identical: {same}",
        highlight=False,
    )
    return results


# ------------------------------------------------------------------ replication workload: precision study


def replication_worker(args: argparse.Namespace) -> None:
    """Predict ``--replication-worker``'s benchmarks (comma-separated) into ``--worker-output``.jsonl with
    the adapter in ``--precision-name``; works with older rait checkouts (no precision option: fp32)."""
    import resource

    import torch

    from rait.data.benchmarks import load_benchmark
    from rait.inference import Predictor, predict_records
    from rait.models import load_model

    dtype = torch.bfloat16 if args.precision_name == "bf16" else torch.float32
    model, tokenizer = load_model(args.adapter, device="cpu", dtype=dtype)  # base model from the adapter
    predictor = Predictor(model, tokenizer, lang="en", max_new_tokens=48, batch_size=32)
    seconds, passages = {}, {}
    for name in args.replication_worker.split(","):
        records = load_benchmark(name, "test", max_examples=args.per_benchmark, seed=42)
        for record in records:
            record.source = name
        started = time.perf_counter()
        predict_records(
            records, predictor, f"{args.worker_output}.jsonl", lang="en", chunk_size=32, progress=False
        )
        seconds[name], passages[name] = time.perf_counter() - started, len(records)
    result = {
        "seconds": seconds,
        "passages": passages,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dtype": str(next(model.parameters()).dtype),
    }
    Path(f"{args.worker_output}.json").write_text(json.dumps(result), encoding="utf-8")


def _per_sentence_counts(path: Path) -> dict[tuple[str, str], dict]:
    """(benchmark, record id) -> counts and answers per type, scored exactly as ``rait evaluate``."""
    from rait.evaluation import evaluate
    from rait.records import QueryPrediction

    sentences: dict[tuple[str, str], dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = QueryPrediction.from_dict(json.loads(line))
        score = evaluate([row]).benchmarks[row.benchmark]
        entry = sentences.setdefault((row.benchmark, row.record_id), {"gold": 0, "pred": 0, "correct": 0})
        entry["gold"] += score.n_gold
        entry["pred"] += score.n_pred
        entry["correct"] += score.n_correct
        entry.setdefault("answers", {})[row.type] = row.output
    return sentences


def _average_f1(counts, benchmarks, index) -> float:
    """Macro-average over benchmarks of micro-F1, for resampled sentence indices per benchmark."""
    total = 0.0
    for b in benchmarks:
        c = counts[b][index[b]].sum(axis=0) if index is not None else counts[b].sum(axis=0)
        p, r = c[2] / (c[1] + 1e-10), c[2] / (c[0] + 1e-10)
        total += 100 * 2 * p * r / (p + r + 1e-10)
    return total / len(benchmarks)


def paired_bootstrap(a: dict, b: dict, resamples: int = 2000, seed: int = 0) -> dict:
    """Average-F1 difference a - b with a 95% interval from resampling sentences within each benchmark."""
    import numpy as np

    keys = sorted(a)
    benchmarks = sorted({k[0] for k in keys})
    arrays = {}
    for name, side in (("a", a), ("b", b)):
        arrays[name] = {
            bench: np.array(
                [[side[k]["gold"], side[k]["pred"], side[k]["correct"]] for k in keys if k[0] == bench]
            )
            for bench in benchmarks
        }
    rng = np.random.default_rng(seed)
    sizes = {bench: len(arrays["a"][bench]) for bench in benchmarks}
    diffs = []
    for _ in range(resamples):
        index = {bench: rng.integers(0, n, n) for bench, n in sizes.items()}
        diffs.append(
            _average_f1(arrays["a"], benchmarks, index) - _average_f1(arrays["b"], benchmarks, index)
        )
    low, high = np.percentile(diffs, [2.5, 97.5])
    observed = _average_f1(arrays["a"], benchmarks, None) - _average_f1(arrays["b"], benchmarks, None)
    return {
        "difference": observed,
        "ci95": [float(low), float(high)],
        "standard_error": float(np.std(diffs)),
        "within_noise": bool(low <= 0 <= high),
    }


def run_replication(args: argparse.Namespace) -> dict:
    variants = {
        "today_fp32": (args.old_src, args.adapter, "fp32"),
        "fp32": (ROOT / "src", args.adapter, "fp32"),
        "bf16": (ROOT / "src", args.adapter, "bf16"),
    }
    if args.adapter_bf16:
        variants["bf16_trained_bf16"] = (ROOT / "src", args.adapter_bf16, "bf16")
    variants = {name: value for name, value in variants.items() if name in (args.variants or variants)}
    groups = [REPLICATION_BENCHMARKS[i :: args.rounds] for i in range(args.rounds)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict."))
    timings: dict[str, list[dict]] = {name: [] for name in variants}
    started = time.time()
    for round_index, group in enumerate(groups):
        order = list(variants) if round_index % 2 == 0 else list(variants)[::-1]
        for name in order:
            src, adapter, precision = variants[name]
            out = tmp / f"{name}-{round_index}"
            command = [sys.executable, __file__, "--replication-worker", ",".join(group)]
            command += ["--adapter", adapter, "--worker-output", str(out), "--precision-name", precision]
            command += ["--per-benchmark", str(args.per_benchmark)]
            env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
            subprocess.run(command, check=True, env=env)
            timings[name].append(json.loads(Path(f"{out}.json").read_text()))
            rate = sum(timings[name][-1]["passages"].values()) / sum(timings[name][-1]["seconds"].values())
            console.print(f"round {round_index + 1} {name}: {rate:.3f} passages/s", highlight=False)
    from rait.evaluation import evaluate_files

    results: dict = {
        "command": "python benchmarks/bench_predict.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "wall_seconds": round(time.time() - started, 1),
        "workload": f"7 English benchmarks x {args.per_benchmark} test sentences (seed 42), no examples",
        "variants": {},
    }
    counts = {}
    for name in variants:
        predictions = tmp / f"{name}.jsonl"
        predictions.write_text(
            "".join(
                Path(f"{tmp / f'{name}-{i}'}.jsonl").read_text(encoding="utf-8") for i in range(len(groups))
            ),
            encoding="utf-8",
        )
        report = evaluate_files([predictions])
        counts[name] = _per_sentence_counts(predictions)
        seconds = sum(s for t in timings[name] for s in t["seconds"].values())
        passages = sum(p for t in timings[name] for p in t["passages"].values())
        results["variants"][name] = {
            "adapter": variants[name][1],
            "precision": variants[name][2],
            "passages": passages,
            "seconds": seconds,
            "passages_per_s": passages / seconds,
            "peak_rss_mib": max(t["peak_rss_mib"] for t in timings[name]),
            "average_f1": report.average_f1,
            "f1": {b: s.f1 for b, s in report.benchmarks.items()},
            "n_unparseable": report.n_unparseable,
        }

    def identical(a: str, b: str) -> dict:
        pairs = [
            (counts[a][k]["answers"][t], counts[b][k]["answers"][t])
            for k in counts[a]
            for t in counts[a][k]["answers"]
        ]
        return {"identical": sum(x == y for x, y in pairs), "compared": len(pairs)}

    v = results["variants"]
    results["comparisons"] = {}
    if {"bf16", "fp32", "today_fp32"} <= v.keys():
        results["comparisons"] = {
            "bf16 / today_fp32 passages/s": v["bf16"]["passages_per_s"] / v["today_fp32"]["passages_per_s"],
            "fp32 / today_fp32 passages/s": v["fp32"]["passages_per_s"] / v["today_fp32"]["passages_per_s"],
            "answers fp32 vs today_fp32": identical("fp32", "today_fp32"),
            "answers bf16 vs fp32": identical("bf16", "fp32"),
            "f1 bf16 - fp32 (inference precision)": paired_bootstrap(counts["bf16"], counts["fp32"]),
        }
    if {"bf16", "bf16_trained_bf16"} <= v.keys():
        results["comparisons"]["f1 bf16-trained - fp32-trained (both bf16 inference)"] = paired_bootstrap(
            counts["bf16_trained_bf16"], counts["bf16"]
        )
    table = Table(title=f"Replication evaluation workload (7 benchmarks x {args.per_benchmark} sentences)")
    for column in ("variant", "passages/s", "peak RSS MiB", "average F1", "unparseable"):
        table.add_column(column, justify="right")
    for name, r in v.items():
        speed, memory, f1 = f"{r['passages_per_s']:.3f}", f"{r['peak_rss_mib']:.0f}", f"{r['average_f1']:.2f}"
        table.add_row(name, speed, memory, f1, str(r["n_unparseable"]))
    console.print(table)
    console.print(json.dumps(results["comparisons"], indent=1), highlight=False)
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
    parser.add_argument("--compare-scoring", action="store_true", help="decoding with vs without scores")
    parser.add_argument("--no-scores", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--benchmarks", nargs="+", default=list(REPLICATION_BENCHMARKS))
    parser.add_argument("--decoding", default="free", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["fast", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=["crossner_ai", "replication"], default="crossner_ai")
    parser.add_argument("--adapter-bf16", default=None, help="replication: adapter trained with bf16")
    parser.add_argument("--old-src", type=Path, default=ROOT.parent / "h12-old" / "src")
    parser.add_argument("--rounds", type=int, default=2, help="replication: benchmark groups")
    parser.add_argument("--per-benchmark", type=int, default=30, help="replication: sentences per benchmark")
    parser.add_argument("--variants", nargs="+", help="replication: run only these variants")
    parser.add_argument("--replication-worker", help=argparse.SUPPRESS)
    parser.add_argument("--precision-name", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.replication_worker:
        replication_worker(args)
        return
    from rait.data.benchmarks import is_available
    from rait.fileio import write_json

    if args.workload == "replication":
        if not args.adapter:
            raise SystemExit("--workload replication needs --adapter (a trained adapter)")
        results = run_replication(args)
        write_json(args.output, results)
        console.print(f"written {args.output}", highlight=False)
        return

    if not is_available("crossner_ai", "test"):
        raise SystemExit("CrossNER-AI is not available: set RAIT_DATA_DIR (see DEVELOPERS.md)")
    if args.compare_decoding:
        if args.output == DEFAULT_OUTPUT:
            args.output = ROOT / "results" / "bench_decoding.json"
        results = compare_decoding(args)
    elif args.compare_scoring:
        if args.output == DEFAULT_OUTPUT:
            args.output = ROOT / "results" / "bench_scoring.json"
        results = compare_scoring(args)
    else:
        results = run(args)
    write_json(args.output, results)
    console.print(f"written {args.output}", highlight=False)


if __name__ == "__main__":
    main()
