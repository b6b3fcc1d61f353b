"""Choose the confidence defaults (score rule, threshold, one type per span) on held-out sentences, and
measure them on test sentences, with the built-in model.

    python benchmarks/confidence_defaults.py predict --split heldout [--per-benchmark 40] [--seed 42]
        [--decoding constrained-words] [--model DIR] [--predictions runs/confidence/heldout.jsonl]
    python benchmarks/confidence_defaults.py choose [--predictions runs/confidence/heldout.jsonl]
        [--output results/confidence/heldout.json]
    python benchmarks/confidence_defaults.py predict --split test --per-benchmark 200
        --predictions runs/confidence/test.jsonl
    python benchmarks/confidence_defaults.py measure [--predictions runs/confidence/test.jsonl]
        [--choice results/confidence/heldout.json] [--output results/confidence/results.json]
    rait report results/confidence/results.json -o results/confidence

``predict`` asks every type of each of the seven English benchmarks (CrossNER x 5, MIT x 2) of seeded
sentences, with no examples, keeping every mention and its score (threshold 0, every type): the
``heldout`` split is CrossNER's dev split and MIT's train split (MIT has no dev split); ``test`` is the test
split, sampled as the powered study samples it (``--per-benchmark 200``, seed 42). Resumable.

``choose`` scores the held-out predictions offline for each score rule (``first``: the answer's first
choice point, for all its mentions; ``open``: the mention's own; ``product``: the product of the choice
points up to it; :func:`rait.inference.confidence.mention_scores`), with and without one type per span, at
each threshold of :data:`rait.evaluation.SWEEP_THRESHOLDS`, under the RA-IT protocol (as the powered study
scores), and keeps the setting with the best average F1 over the benchmarks; ties go to the lower
threshold. Prints the grid's best rows and writes them all.

``measure`` applies the chosen setting to the test predictions and writes a results file for
``rait report``: the chosen setting's rows and the same answers with every mention and type kept
(constrained-words, today's default), both from this run, the built-in model's free-decoding rows of the
powered study (``results/powered/results.json``, with their per-sentence counts), and the precision-recall
curve of the average by threshold. This run's constrained-words answers are the study's up to bf16 batch
effects (batch 128 and 64 passages per call here, 32 and 32 in the study): the F1 differences per benchmark
are printed and stored. The report then shows P/R/F1 per benchmark, the curve,
and the paired-bootstrap differences between the three.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rait.data import load_benchmark  # noqa: E402
from rait.evaluation import SWEEP_THRESHOLDS, curve_points, evaluate, evaluate_files, sweep  # noqa: E402
from rait.experiment import load_config  # noqa: E402
from rait.fileio import read_json, read_jsonl, write_json  # noqa: E402
from rait.inference import confidence, reselect  # noqa: E402
from rait.inference.confidence import SCORE_RULES, mention_scores  # noqa: E402
from rait.records import QueryPrediction  # noqa: E402

POWERED = ROOT / "configs" / "experiments" / "cpu_en_powered.yaml"
BENCHMARKS = tuple(load_config(POWERED).evaluation.benchmarks)  # the powered study's seven English benchmarks
PROTOCOL = "ra-it"
BUILTIN_CELL = "n2217-vanilla-s42"  # the powered study's cell shipped as smollm2-ner-en


def heldout_split(name: str) -> str:
    return "train" if name.startswith("mit_") else "dev"


def predict(args) -> None:
    from rait.inference import load_predictor, predict_records

    confidence.SCORE_RULE = "open"  # write each mention's own p_open: every rule follows from them
    records = []
    for name in BENCHMARKS:
        split = heldout_split(name) if args.split == "heldout" else "test"
        records += load_benchmark(name, split, max_examples=args.per_benchmark, seed=args.seed)
    predictor = load_predictor(args.model, decoding=args.decoding)
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    stats = predict_records(records, predictor, args.predictions, threshold=None, multi_label=True)
    print(json.dumps(stats.to_dict()))


def with_rule(rows: list[QueryPrediction], rule: str) -> list[QueryPrediction]:
    """Rows rescored by ``rule`` (:func:`rait.inference.confidence.mention_scores`) from their ``open`` scores
    (the scores ``predict`` writes with ``SCORE_RULE = "open"``: each mention's own choice point, in the order
    written; constrained answers never repeat a mention)."""
    return [
        replace(row, scores=mention_scores(row.scores, row.scores, rule)) if row.scores is not None else row
        for row in rows
    ]


def choose(args) -> None:
    rows = [QueryPrediction.from_dict(row) for _, row in read_jsonl(args.predictions)]
    grid = []
    for rule in SCORE_RULES:
        rescored = with_rule(rows, rule)
        for multi_label in (True, False):
            for threshold in SWEEP_THRESHOLDS:
                report = evaluate(reselect(rescored, threshold, multi_label), protocol=PROTOCOL)
                grid.append(
                    {
                        "rule": rule,
                        "multi_label": multi_label,
                        "threshold": threshold,
                        "precision": round(report.average_precision, 2),
                        "recall": round(report.average_recall, 2),
                        "f1": round(report.average_f1, 2),
                        "f1_per_benchmark": {n: round(s.f1, 2) for n, s in report.benchmarks.items()},
                    }
                )
    best = max(grid, key=lambda g: (g["f1"], -g["threshold"]))
    for g in grid:  # per benchmark: the chosen setting's only
        if g is not best:
            del g["f1_per_benchmark"]
    ranked = sorted(grid, key=lambda g: -g["f1"])
    for g in ranked[:12]:
        print(
            f"{g['rule']:8} multi_label={g['multi_label']!s:5} t={g['threshold']:.2f}  "
            f"P {g['precision']:.2f}  R {g['recall']:.2f}  F1 {g['f1']:.2f}"
        )
    baseline = evaluate_files([args.predictions], protocol=PROTOCOL)
    print(f"every mention, every type: F1 {baseline.average_f1:.2f}; chosen: {best}")
    write_json(
        args.output,
        {
            "what": (
                "held-out sentences (CrossNER dev, MIT train), every type, no examples, the model of "
                "`predict` (default: the built-in model)"
            ),
            "predictions": str(args.predictions),
            "n_queries": baseline.n_queries,
            "protocol": PROTOCOL,
            "baseline_f1": round(baseline.average_f1, 2),
            "chosen": best,
            "grid": grid,
        },
    )


def label(chosen: dict) -> str:
    """The decoding label of the chosen setting in the report."""
    kind = "every type" if chosen["multi_label"] else "one type per span"
    rule = "" if chosen["rule"] == "open" else f", {chosen['rule']} score"
    return f"constrained-words, threshold {chosen['threshold']:g}, {kind}{rule}"


def _row(template: dict, report, decoding: str) -> dict:
    """A results row of ``template``'s cell with ``report``'s scores of its benchmark, for ``decoding``."""
    name = template["benchmark"]
    score = report.benchmarks[name]
    counts = ("n_queries", "n_unparseable", "n_capped", "n_repetition")
    return {**template, "decoding": decoding, "precision": score.precision, "recall": score.recall} | {
        "f1": score.f1,
        **{count: getattr(score, count) for count in counts},
        "sentences": report.sentences[name],
    }


def measure(args) -> None:
    """The chosen setting on the test predictions, beside the same answers with every mention kept (today's
    default) and the powered study's free-decoding rows of the built-in model, as a results file for
    ``rait report``."""
    chosen = read_json(args.choice)["chosen"]
    rows = with_rule(
        [QueryPrediction.from_dict(row) for _, row in read_jsonl(args.predictions)], chosen["rule"]
    )
    today = evaluate(rows, protocol=PROTOCOL)
    new = evaluate(reselect(rows, chosen["threshold"], chosen["multi_label"]), protocol=PROTOCOL)
    powered = read_json(args.powered)
    cell = [row for row in powered["rows"] if row["model"] == BUILTIN_CELL and row["mode"] == "none"]
    free = [row for row in cell if row.get("decoding") in (None, "free")]
    study = {row["benchmark"]: row for row in cell if row.get("decoding") == "constrained-words"}
    check = {name: round(today.benchmarks[name].f1 - row["f1"], 4) for name, row in study.items()}
    print(f"these constrained-words answers minus the powered study's, F1 per benchmark: {check}")
    added = [_row(row, today, "constrained-words") for row in study.values()]
    added += [_row(row, new, label(chosen)) for row in study.values()]
    choose = lambda found, t: reselect(found, t, chosen["multi_label"])  # noqa: E731
    curve = curve_points(sweep(rows, choose, protocol=PROTOCOL), chosen["multi_label"])
    curve["what"] = (
        f"The built-in model's constrained-words answers to the test sentences, {chosen['rule']} scores, "
        "scored at each threshold (benchmarks/confidence_defaults.py measure)."
    )
    keep = ("experiment", "lang", "base_model", "embedder", "benchmarks", "max_examples", "protocol")
    results = {key: powered[key] for key in keep} | {"experiment": "confidence defaults, built-in model"}
    results |= {"complete": True, "missing": [], "rows": free + added, "curve": curve}
    results["confidence"] = {"chosen": chosen, "choice": str(args.choice), "minus_powered_study": check}
    write_json(args.output, results)
    print(
        f"new default average F1 {new.average_f1:.2f} (P {new.average_precision:.2f}, "
        f"R {new.average_recall:.2f}); without selection {today.average_f1:.2f} -> {args.output}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--split", choices=("heldout", "test"), default="heldout")
    p.add_argument("--per-benchmark", type=int, default=40)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--decoding", default="constrained-words")
    p.add_argument("--model", help="an adapter or model directory [default: the built-in model]")
    p.add_argument("--predictions", type=Path, default=ROOT / "runs" / "confidence" / "heldout.jsonl")
    c = sub.add_parser("choose")
    c.add_argument("--predictions", type=Path, default=ROOT / "runs" / "confidence" / "heldout.jsonl")
    c.add_argument("--output", type=Path, default=ROOT / "results" / "confidence" / "heldout.json")
    m = sub.add_parser("measure")
    m.add_argument("--predictions", type=Path, default=ROOT / "runs" / "confidence" / "test.jsonl")
    m.add_argument("--choice", type=Path, default=ROOT / "results" / "confidence" / "heldout.json")
    m.add_argument("--powered", type=Path, default=ROOT / "results" / "powered" / "results.json")
    m.add_argument("--output", type=Path, default=ROOT / "results" / "confidence" / "results.json")
    args = parser.parse_args()
    {"predict": predict, "choose": choose, "measure": measure}[args.command](args)


if __name__ == "__main__":
    main()
