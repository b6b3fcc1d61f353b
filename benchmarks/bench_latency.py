"""Inference speed of ``rait.NER`` and ``rait predict``, this checkout beside an older source, in one run.

    python benchmarks/bench_latency.py [--old-commit 8e260e0 | --old-src DIR] [--rounds 2] [--repeats 9]
        [--batch-source crossner_politics] [--batch-n 30] [--predict-benchmarks B ...]
        [--predict-per-benchmark 5] [--threads 1] [--variants new old] [--output FILE.json]
    python benchmarks/bench_latency.py --profile FILE.txt     # cProfile + torch profiler of this checkout

Each measurement runs in its own process (``PYTHONPATH`` = the variant's ``src``), which loads the built-in
model with its defaults (``NER.from_pretrained()``: bf16 where the CPU has it, constrained-words decoding):

- ``latency``: :meth:`rait.NER.predict_entities` on one 22-word news sentence with 5 types, the median of
  ``--repeats`` calls (after one warm-up call);
- ``batch``: :meth:`rait.NER.batch_predict_entities` on the first ``--batch-n`` test sentences of 8 words or
  more of ``--batch-source`` (a registered benchmark or a labelled file) x 3 types (person, organization,
  location), texts/s (one timed call, after a warm-up on 4 texts);
- ``predict``: ``rait predict``'s evaluation workload (:func:`rait.inference.predict.run_predict` with the
  CLI's defaults: free decoding, batch 128, 256 new tokens, no examples) on ``--predict-per-benchmark`` seeded
  test passages of each ``--predict-benchmarks``, questions/s, model loading excluded;
- the peak resident memory of each process (``ru_maxrss``; model loading included);
- ``identical``: how many raw answers the variants share: the predict workload's (bf16) and, in fp32 (where
  answers do not depend on the batch), the sentence's and the batch texts' in both decodings (first round).
  Where this checkout cuts answers scored below the threshold, also whether its default entities equal
  those chosen from whole answers (fp32, the batch texts).

``--old-commit`` exports that commit's ``src`` with ``git archive`` into a temporary folder (``--old-src``
names one instead); this checkout's ``src`` is copied first, so edits during the run change nothing. Each
round runs every measurement of both variants, their order alternating, so a shared machine slows both
alike; the figures are each variant's best round. One torch thread by default: on a 2-core machine shared
with other work, two threads thrash as soon as another process runs. Prints a table and writes
``results/bench_latency.json``. The CoNLL-2003 test set is not in the shared data: the default batch source
is CrossNER politics (news-like, longer sentences); pass a CoNLL-2003 file as ``--batch-source`` where one
is at hand."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "results" / "bench_latency.json"
OLD_COMMIT = "8e260e0"
SENTENCE = (
    "Apple chief executive Tim Cook met German Chancellor Olaf Scholz in Berlin on Tuesday to discuss "
    "plans for a factory near Munich."
)
SENTENCE_TYPES = ("person", "organization", "location", "date", "nationality")
BATCH_TYPES = ("person", "organization", "location")
BATCH_MIN_WORDS = 8
PREDICT_BENCHMARKS = ("crossner_ai", "crossner_politics", "mit_movie", "mit_restaurant")
VARIANTS = ("new", "old")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _predict_module():
    """``rait.inference.predict`` (``rait.predict`` before the layout of issue #26)."""
    try:
        return importlib.import_module("rait.inference.predict")
    except ImportError:
        return importlib.import_module("rait.predict")


def worker(args) -> None:
    """One variant's measurements (this process imports the ``rait`` on ``PYTHONPATH``)."""
    import torch

    from rait import NER

    torch.set_num_threads(args.threads)
    job = json.loads(Path(args.job).read_text())
    out: dict = {"src": str(Path(__import__("rait").__file__).parent)}
    started = time.perf_counter()
    ner = NER.from_pretrained()
    out["load_seconds"] = time.perf_counter() - started
    out["rss_after_load_mib"] = peak_rss_mib()

    out[args.phase] = PHASES[args.phase](ner, job, args)
    out["peak_rss_mib"] = peak_rss_mib()
    Path(args.output).write_text(json.dumps(out))


def latency_phase(ner, job: dict, args) -> dict:
    ner.predict_entities(SENTENCE, list(SENTENCE_TYPES))
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        entities = ner.predict_entities(SENTENCE, list(SENTENCE_TYPES))
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "times_s": times, "entities": entities}


def batch_phase(ner, job: dict, args) -> dict:
    texts = job["batch_texts"]
    ner.batch_predict_entities(texts[:4], list(BATCH_TYPES))
    started = time.perf_counter()
    found = ner.batch_predict_entities(texts, list(BATCH_TYPES))
    seconds = time.perf_counter() - started
    return {"texts_per_s": len(texts) / seconds, "seconds": seconds, "entities": found}


def predict_phase(ner, job: dict, args) -> dict:
    predict = _predict_module()
    predictor = ner.predictor
    predictor.decoding = "free"
    with tempfile.TemporaryDirectory() as tmp:
        config = predict.PredictConfig(
            output=Path(tmp) / "predictions.jsonl",
            benchmarks=list(job["predict_benchmarks"]),
            max_examples=job["predict_per_benchmark"],
        )
        started = time.perf_counter()
        stats = predict.run_predict(config, progress=False, answerer=predictor)
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in config.output.read_text().splitlines() if line.strip()]
    return {
        "questions": stats.n_queries,
        "passages": stats.n_predicted,
        "seconds": seconds,
        "questions_per_s": stats.n_queries / seconds,
        "outputs": {f"{r['record_id']}|{r['type']}": r["output"] for r in rows},
    }


def identity_phase(ner, job: dict, args) -> dict:
    """Raw answers in fp32 (no bf16 batch dependence): the sentence and the batch texts, both decodings."""
    from rait import NER

    fp32 = NER.from_pretrained(precision="fp32")
    predictor, default = fp32.predictor, fp32.predictor.decoding
    query = _predict_module().PassageQuery
    queries = [query(SENTENCE, SENTENCE_TYPES)] + [query(text, BATCH_TYPES) for text in job["batch_texts"]]
    answers = {}
    for decoding in ("constrained-words", "free"):
        predictor.decoding = decoding
        answers[decoding] = [[str(a) for a in passage] for passage in predictor.answer_many(queries)]
    predictor.decoding = default
    return {"answers": answers, **_cut_check(fp32, job)}


def _cut_check(ner, job: dict) -> dict:
    """Where the predictor cuts answers scored below the threshold (``Predictor.min_score``): whether the
    default call's entities (``ner``: fp32) equal those chosen from whole answers (the batch texts)."""
    try:
        from rait.inference import Predictor, select_entities
    except ImportError:  # an old source, before rait.inference
        return {}
    if not hasattr(Predictor, "min_score"):
        return {}
    texts = job["batch_texts"]
    cut = ner.batch_predict_entities(texts, list(BATCH_TYPES))
    whole = ner.batch_predict_entities(texts, list(BATCH_TYPES), threshold=0, multi_label=True)
    chosen = [select_entities(entities, ner.threshold, ner.multi_label) for entities in whole]
    return {"cut_entities_equal_whole": cut == chosen, "cut_entities": sum(map(len, cut))}


PHASES = {
    "latency": latency_phase,
    "batch": batch_phase,
    "predict": predict_phase,
    "identity": identity_phase,
}
TIMED = ("latency", "batch", "predict")
FIGURES = {
    "latency": ("median_s", "s"),
    "batch": ("texts_per_s", "texts/s"),
    "predict": ("questions_per_s", "questions/s"),
}


def profile(args) -> None:
    """cProfile (top functions by own time) and the torch profiler (top operators) of the latency call and
    the batch call of this checkout, in this process; written as text to ``--profile``."""
    import cProfile
    import io
    import pstats

    import torch

    from rait import NER

    torch.set_num_threads(args.threads)
    ner = NER.from_pretrained()
    texts = batch_texts(args.batch_source, args.batch_n)
    calls = {
        "latency": lambda: ner.predict_entities(SENTENCE, list(SENTENCE_TYPES)),
        "batch": lambda: ner.batch_predict_entities(texts, list(BATCH_TYPES)),
    }
    report = io.StringIO()
    for name, call in calls.items():
        call()
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(call)
        report.write(f"== {name}: cProfile, {time.perf_counter() - started:.3f} s under the profiler\n")
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            call()
        report.write(f"== {name}: torch profiler\n")
        report.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25) + "\n")
    report.write(prompt_forward_profile(calls["batch"]))
    report.write(forward_passes(ner, calls))
    args.profile.parent.mkdir(parents=True, exist_ok=True)
    args.profile.write_text(report.getvalue())
    print(f"-> {args.profile}")


def forward_passes(ner, calls: dict) -> str:
    """Each model call of each of ``calls``: the tokens fed (rows x width), the cache slots after it and
    its milliseconds."""
    predictor, lines = ner.predictor, []
    inner = predictor._forward

    def timed(ids, mask, *rest):
        started = time.perf_counter()
        found = inner(ids, mask, *rest)
        passes.append((tuple(ids.shape), mask.shape[-1], time.perf_counter() - started))
        return found

    predictor._forward = timed
    try:
        for name, call in calls.items():
            passes: list = []
            started = time.perf_counter()
            call()
            took = time.perf_counter() - started
            lines.append(
                f"== {name}: {len(passes)} forward passes, {sum(p[2] for p in passes):.3f} of {took:.3f} s"
            )
            lines += [
                f"  fed {rows} x {width}, cache {slots}: {ms * 1e3:.0f} ms"
                for (rows, width), slots, ms in passes
            ]
    finally:
        del predictor._forward
    return "\n".join(lines) + "\n"


def prompt_forward_profile(call) -> str:
    """The torch profiler's top operators (and shapes) inside the prompt forward only
    (:func:`rait.inference.prefill.prefill`) during ``call``."""
    import torch

    import rait.inference.transformers as backend

    inner = backend.prefill
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
    spent = [0.0]

    def profiled(*args, **kwargs):
        with prof:
            started = time.perf_counter()
            found = inner(*args, **kwargs)
            spent[0] += time.perf_counter() - started
        return found

    backend.prefill = profiled
    try:
        started = time.perf_counter()
        call()
        total = time.perf_counter() - started
    finally:
        backend.prefill = inner
    averages = prof.key_averages()
    return (
        f"== batch: prompt forward only, {spent[0]:.3f} s of {total:.3f} s (torch profiler)\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=15)
        + "\n"
        + prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15)
        + "\n"
    )


def batch_texts(source: str, n: int) -> list[str]:
    """The first ``n`` test passages of ``source`` (benchmark name or file) with at least 8 words."""
    from rait.data.benchmarks import BENCHMARKS, load_benchmark
    from rait.data.formats import load_records

    if source in BENCHMARKS:
        records = load_benchmark(source, "test", max_examples=None)
    else:
        records = load_records(source)
    texts = [r.text for r in records if len(r.text.split()) >= BATCH_MIN_WORDS]
    return texts[:n]


def old_source(args, workdir: Path) -> Path:
    if args.old_src:
        return args.old_src
    target = workdir / f"rait-{args.old_commit}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", args.old_commit, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def run_variant(variant: str, src: Path, phase: str, args, job: Path, workdir: Path, index: int) -> dict:
    from rait.data.benchmarks import data_dir

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(src), RAIT_DATA_DIR=str(data_dir()))
    result = workdir / f"{variant}-{phase}-{index}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--job", str(job), "--phase", phase]
    command += ["--output", str(result), "--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{variant} {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(result.read_text())


def best(runs: dict[str, list[dict]]) -> dict:
    """A variant's figures: each phase's best round (latency: the lowest median)."""
    runs = {phase: runs[phase] for phase in TIMED}
    every = [run for phase in runs.values() for run in phase]
    return {
        "latency_median_s": min(r["latency"]["median_s"] for r in runs["latency"]),
        "batch_texts_per_s": max(r["batch"]["texts_per_s"] for r in runs["batch"]),
        "predict_questions_per_s": max(r["predict"]["questions_per_s"] for r in runs["predict"]),
        "predict_questions": runs["predict"][0]["predict"]["questions"],
        "peak_rss_mib": {
            phase: max(r["peak_rss_mib"] for r in phase_runs) for phase, phase_runs in runs.items()
        },
        "rss_after_load_mib": max(r["rss_after_load_mib"] for r in every),
        "load_seconds": min(r["load_seconds"] for r in every),
        "rounds": {
            "latency_median_s": [r["latency"]["median_s"] for r in runs["latency"]],
            "batch_texts_per_s": [r["batch"]["texts_per_s"] for r in runs["batch"]],
            "predict_questions_per_s": [r["predict"]["questions_per_s"] for r in runs["predict"]],
        },
    }


def identical(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> dict:
    """How many raw answers two variants share: the predict workload's (bf16, first round) and the fp32
    answers of the identity phase (sentence + batch texts, per decoding)."""
    pred_a, pred_b = a["predict"][0]["predict"]["outputs"], b["predict"][0]["predict"]["outputs"]
    same = {"predict_outputs_bf16": f"{sum(pred_a[k] == pred_b.get(k) for k in pred_a)}/{len(pred_a)}"}
    fp32_a, fp32_b = a["identity"][0]["identity"]["answers"], b["identity"][0]["identity"]["answers"]
    for decoding, passages in fp32_a.items():
        pairs = [
            pair
            for pa, pb in zip(passages, fp32_b[decoding], strict=True)
            for pair in zip(pa, pb, strict=True)
        ]
        same[f"fp32_{decoding}"] = f"{sum(x == y for x, y in pairs)}/{len(pairs)}"
    cut = a["identity"][0]["identity"]
    if "cut_entities_equal_whole" in cut:
        same["fp32_cut_entities_equal_whole"] = cut["cut_entities_equal_whole"]
    return same


def main_parent(args) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="bench_latency."))
    job = workdir / "job.json"
    texts = batch_texts(args.batch_source, args.batch_n)
    job.write_text(
        json.dumps(
            {
                "batch_texts": texts,
                "predict_benchmarks": args.predict_benchmarks,
                "predict_per_benchmark": args.predict_per_benchmark,
            }
        )
    )
    sources = {"new": Path(shutil.copytree(ROOT / "src", workdir / "new" / "src"))}  # edits during the run
    if "old" in args.variants:
        sources["old"] = old_source(args, workdir)
    variants = [v for v in VARIANTS if v in args.variants]
    runs: dict[str, dict[str, list[dict]]] = {v: {phase: [] for phase in PHASES} for v in variants}
    started = time.time()
    step = 0
    for round_index in range(args.rounds):
        for phase in PHASES if round_index == 0 else TIMED:
            for variant in variants if step % 2 == 0 else variants[::-1]:
                run = run_variant(variant, sources[variant], phase, args, job, workdir, round_index)
                runs[variant][phase].append(run)
                name, unit = FIGURES.get(phase, (None, ""))
                figure = f"{run[phase][name]:.3f} {unit}, " if name else ""
                console.print(
                    f"round {round_index + 1} {phase} {variant}: {figure}"
                    f"peak RSS {run['peak_rss_mib']:.0f} MiB, load average {os.getloadavg()[0]:.1f}"
                )
            step += 1
    results = {v: best(runs[v]) for v in variants}
    report = {
        "command": "python benchmarks/bench_latency.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, {args.threads} threads, "
        f"torch {torch.__version__}",
        "old": str(args.old_src or args.old_commit),
        "sentence": SENTENCE,
        "sentence_types": SENTENCE_TYPES,
        "batch_source": args.batch_source,
        "batch_texts": len(texts),
        "batch_types": BATCH_TYPES,
        "predict_benchmarks": args.predict_benchmarks,
        "predict_per_benchmark": args.predict_per_benchmark,
        "wall_seconds": round(time.time() - started, 1),
        "results": results,
    }
    if {"new", "old"} <= set(variants):
        new, old = results["new"], results["old"]
        report["speedup"] = {
            "latency": old["latency_median_s"] / new["latency_median_s"],
            "batch": new["batch_texts_per_s"] / old["batch_texts_per_s"],
            "predict": new["predict_questions_per_s"] / old["predict_questions_per_s"],
        }
        report["identical"] = identical(runs["new"], runs["old"])
        report["entities"] = {v: runs[v]["latency"][0]["latency"]["entities"] for v in variants}
        report["answers_fp32"] = {v: runs[v]["identity"][0]["identity"]["answers"] for v in variants}
    table = Table(title=f"rait inference, {report['machine']}")
    for column in ("variant", "latency (ms)", "batch texts/s", "predict questions/s", "peak RSS MiB"):
        table.add_column(column, justify="right")
    for variant, figures in results.items():
        table.add_row(
            variant,
            f"{figures['latency_median_s'] * 1000:.0f}",
            f"{figures['batch_texts_per_s']:.2f}",
            f"{figures['predict_questions_per_s']:.2f}",
            f"{max(figures['peak_rss_mib'].values()):.0f}",
        )
    if "speedup" in report:
        speed = report["speedup"]
        ratios = (speed["latency"], speed["batch"], speed["predict"])
        table.add_row("speed-up", *(f"{ratio:.2f}x" for ratio in ratios))
    console.print(table)
    if "identical" in report:
        console.print(f"identical answers (new vs old): {report['identical']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"-> {args.output}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--old-src", type=Path, default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch-source", default="crossner_politics")
    parser.add_argument("--batch-n", type=int, default=30)
    parser.add_argument("--predict-benchmarks", nargs="+", default=list(PREDICT_BENCHMARKS))
    parser.add_argument("--predict-per-benchmark", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--profile", type=Path, default=None, help="Profile this checkout into FILE instead.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=tuple(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    elif args.profile:
        profile(args)
    else:
        main_parent(args)


if __name__ == "__main__":
    main()
