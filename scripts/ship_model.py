"""Package a trained rait adapter as a built-in model of the rait package (maintainers' tool).

    python scripts/ship_model.py ADAPTER_DIR [--name smollm2-ner-en] [--source TEXT]
        [--selection JSON] [--scores JSON] [--card docs/model_card.md] [--overwrite]
    python scripts/ship_model.py --experiment CONFIG [--cells CELL ...] [--output FILE.json]
        [--max-conversations N] [--compare-only] [--name ...] [--scores JSON] [--card ...] [--overwrite]
    python scripts/ship_model.py --experiment CONFIG --by heldout-f1 [--cells CELL ...]
        [--heldout training [--types N] [--max-passages N] | --heldout benchmarks [--per-benchmark N]]
        [--decoding D] [--threshold T | --choose-threshold]
        [--multi-label | --every-mention]
        [--output FILE.json] [--compare-only] ...

Writes src/rait/resources/models/NAME/ (rait.builtin.package_adapter: bf16 weights, portable base model
name, builtin.json with the metadata) and, with --card, a draft model card to edit. JSON options take
inline JSON or a .json file. Commit the packaged directory; rait.NER.from_pretrained() then loads it.

With --experiment, the adapter is chosen among the study's finished models by their loss on the common
hold-out (rait.experiment.choice.compare_models: passages no cell trained on, without examples, never test
data); the comparison is written to --output [default: results/<experiment>.choice.json] and becomes the
packaged model's selection metadata. With --by heldout-f1 the choice is by F1 on held-out data asked like
a benchmark: the same hold-out, every type of a type list (--heldout training), or the evaluation
benchmarks' dev sentences (train for MIT), every type of each (--heldout benchmarks; the rule for the
built-in model, docs/experiments.md) (rait.experiment.heldout.heldout_f1: every finished
model with each inference mode and decoding the config evaluates, in-domain ones aside), keeping the
mentions rait.NER keeps by default (rait.inference.DEFAULT_THRESHOLD, one type per span; --threshold,
--multi-label, or --every-mention for the paper's protocol; --choose-threshold: each candidate at its best
threshold of rait.evaluation.SWEEP_THRESHOLDS on the hold-out, as if shipped with it) [default output:
results/<experiment>.heldout_f1.json]; the chosen decoding, threshold and multi_label are packaged as the
model's defaults (rait_config.json), and a chosen candidate that uses out-domain examples at inference is
packaged with its example pool (its training passages, as pool.jsonl and their embeddings) and
examples="pool" as the default. Without --scores, its scores metadata is the chosen cell's test F1
without examples, per decoding, with bootstrap intervals, from the study's finished eval cells
(rait.experiment.choice.shipped_scores); none when it has no finished one. Run it where
`rait experiment CONFIG` runs (output_dir is relative)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rait.builtin import BUILTIN_MODELS, DEFAULT_BUILTIN, builtin_path, model_card, package_adapter
from rait.errors import RaitError
from rait.evaluation import SWEEP_THRESHOLDS
from rait.experiment.heldout import DEFAULT_PER_BENCHMARK, DEFAULT_TYPES, HELDOUT_SETS
from rait.inference import DECODINGS, DEFAULT_THRESHOLD

SHIPPABLE_STRATEGIES = ("nn_bm25", "nn")  # as rait.NER's out-domain and in-domain retrieval

if TYPE_CHECKING:
    from rait.experiment import ExperimentConfig


def json_option(value: str):
    """Inline JSON, or the content of a ``.json`` file."""
    try:
        if value.endswith(".json") and Path(value).is_file():
            return json.loads(Path(value).read_text(encoding="utf-8"))
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RaitError(f"{value[:60]}: not JSON ({exc.msg})") from None


def compare(args) -> tuple[ExperimentConfig, dict]:
    """Compare the experiment's models, write the comparison, print a table; (config, comparison)."""
    from rait.experiment import load_config
    from rait.experiment.choice import compare_models
    from rait.fileio import check_output_file, write_json

    config = load_config(args.experiment)
    output = args.output or Path("results") / f"{config.name}.choice.json"
    check_output_file(output)
    comparison = compare_models(
        config, args.cells, max_conversations=args.max_conversations, precision=args.precision
    )
    write_json(output, comparison)
    held = comparison["holdout"]
    print(f"common hold-out: {held['conversations_scored']} of {held['passages']} passages")
    print(f"{'cell':<32} {'lr':>8} {'epochs':>6} {'val loss':>9} {'hold-out':>9} {'tokens':>8}")
    for row in comparison["rows"]:
        mark = " *" if row["cell"] == comparison["chosen"] else ""
        hyper, val = row["selected"], row["validation_loss"]
        print(
            f"{row['cell']:<32} {hyper['learning_rate']:>8g} {hyper['epochs']:>6g} "
            f"{'-' if val is None else f'{val:.4f}':>9} {row['holdout_loss']:>9.4f} {row['tokens']:>8}{mark}"
        )
    for cell, status in comparison["not_compared"].items():
        print(f"{cell:<32} not compared ({status})")
    print(f"chosen: {comparison['chosen']} ({comparison['chosen_path']}); comparison in {output}")
    return config, comparison


def compare_heldout_f1(args) -> tuple[ExperimentConfig, dict]:
    """Score the experiment's candidates by held-out F1, write the record, print a table."""
    from rait.experiment import load_config
    from rait.experiment.heldout import heldout_f1
    from rait.fileio import check_output_file, write_json

    config = load_config(args.experiment)
    output = args.output or Path("results") / f"{config.name}.heldout_f1.json"
    check_output_file(output)
    choice = None if args.every_mention else (args.threshold, args.multi_label)
    result = heldout_f1(
        config,
        args.cells,
        n_types=args.types,
        max_passages=args.max_passages,
        decoding=args.decoding,
        choice=choice,
        thresholds=SWEEP_THRESHOLDS if args.choose_threshold else None,
        heldout=args.heldout,
        per_benchmark=args.per_benchmark,
    )
    write_json(output, result)
    held = result["holdout"]
    asked = f"{len(held['types'])} types" if "types" in held else f"every type of {len(held['benchmarks'])}"
    print(f"hold-out ({held['set']}): {held['passages']} passages x {asked}: {held['queries']} queries")
    threshold = "each candidate's best" if args.choose_threshold else None if choice is None else choice[0]
    kept = "every mention" if choice is None else f"threshold {threshold}, multi_label {choice[1]}"
    print(f"mentions kept: {kept}")
    print(f"{'cell':<32} {'mode':<24} {'thr':>5} {'P':>6} {'R':>6} {'F1':>6}")
    chosen = result["chosen"]
    for row in result["rows"]:
        mark = " *" if (row["cell"], row["mode"]) == (chosen["cell"], chosen["mode"]) else ""
        scores = " ".join(f"{row[k]:>6.2f}" for k in ("precision", "recall", "f1"))
        at = "-" if row["threshold"] is None else f"{row['threshold']:g}"
        print(f"{row['cell']:<32} {row['mode']:<24} {at:>5} {scores}{mark}")
    for cell, status in result["not_compared"].items():
        print(f"{cell:<32} not compared ({status})")
    print(f"chosen: {chosen['cell']} with mode {chosen['mode']}; record in {output}")
    return config, result


def shipped_settings(config: ExperimentConfig, chosen: dict, choice: dict | None) -> tuple[dict, object]:
    """The built-in model's saved settings for the held-out choice (its decoding, threshold and
    multi_label; with examples at inference, the examples mode and the pool's settings) and its pool
    (the chosen model's out-domain pool, None without examples)."""
    from rait.experiment.stages import PREDICT_DEFAULTS, _out_domain_pool

    settings = {"decoding": chosen["decoding"]}
    if choice is not None:
        settings |= {"threshold": chosen["threshold"], "multi_label": choice["multi_label"]}
    if chosen["mode"].startswith("none"):
        return settings, None
    cell = next(
        c for c in config.eval_cells() if c.model_name == chosen["cell"] and c.mode.name == chosen["mode"]
    )
    mode = cell.mode
    if mode.kind != "out-domain" or mode.strategy not in SHIPPABLE_STRATEGIES:
        raise RaitError(
            f"the chosen candidate retrieves examples as {chosen['mode']}; rait.NER retrieves out-domain "
            f"({' or '.join(SHIPPABLE_STRATEGIES)}) only: package it by hand; the record is written"
        )
    bm25 = {**PREDICT_DEFAULTS, **config.evaluation.predict}["bm25_threshold"]
    pool = _out_domain_pool(
        config.training.source,
        config.training.format,
        config.lang,
        config.embedder,
        *config.pool_sample(cell.train),
    )
    # rait.NER's out-domain is the paper's NN + BM25 filter; its in-domain the k nearest, unfiltered
    kind = "out-domain" if mode.strategy == "nn_bm25" else "in-domain"
    settings |= {"examples": "pool", "pool": {"mode": kind, "k": mode.k, "bm25_threshold": bm25}}
    print(f"shipped with its example pool: {len(pool)} passages, {kind}, k={mode.k}")
    return settings, pool


def _model_path(config: ExperimentConfig, cell: str) -> str:
    from rait.experiment.choice import _steps

    return _steps(config)[1][cell].read_marker()["result"]["path"]


def experiment_scores(config: ExperimentConfig, cell: str) -> dict | None:
    """The scores metadata of ``cell`` from the experiment's finished eval cells; prints what it found."""
    from rait.experiment.choice import shipped_scores

    scores = shipped_scores(config, cell)
    if scores is None:
        print(f"no finished eval cell of {cell} without examples: packaging without scores")
    else:
        print(f"scores: {cell}'s finished eval cells without examples ({', '.join(scores['f1'])})")
    return scores


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("adapter_dir", type=Path, nargs="?", help="a finished `rait train` output directory")
    parser.add_argument("--experiment", type=Path, help="choose the adapter among this study's models")
    parser.add_argument("--cells", nargs="+", help="compare these training cells only (finished models)")
    parser.add_argument("--output", type=Path, help="the comparison's JSON file (with --experiment)")
    parser.add_argument("--max-conversations", type=int, help="score the first N hold-out conversations")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--compare-only", action="store_true", help="write the comparison, package nothing")
    parser.add_argument("--by", choices=("loss", "heldout-f1"), default="loss", help="the selection rule")
    parser.add_argument("--heldout", choices=HELDOUT_SETS, default="training", help="--by heldout-f1: which")
    parser.add_argument("--types", type=int, default=DEFAULT_TYPES, help="--by heldout-f1: type list size")
    parser.add_argument(
        "--per-benchmark",
        type=int,
        default=DEFAULT_PER_BENCHMARK,
        help="--heldout benchmarks: sentences per benchmark",
    )
    parser.add_argument("--max-passages", type=int, help="--by heldout-f1: the first N hold-out passages")
    parser.add_argument("--decoding", choices=DECODINGS, help="--by heldout-f1: instead of each mode's")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="--by heldout-f1: keep mentions scored this",
    )
    parser.add_argument(
        "--choose-threshold",
        action="store_true",
        help="--by heldout-f1: score each candidate at its best threshold on the hold-out",
    )
    parser.add_argument(
        "--multi-label", action="store_true", help="--by heldout-f1: keep every type of a span, not the best"
    )
    parser.add_argument(
        "--every-mention", action="store_true", help="--by heldout-f1: keep every mention (paper protocol)"
    )
    parser.add_argument("--name", default=DEFAULT_BUILTIN, choices=sorted(BUILTIN_MODELS))
    parser.add_argument("--source", help="where the adapter comes from [default: ADAPTER_DIR as given]")
    parser.add_argument("--selection", help="how it was chosen (JSON)")
    parser.add_argument("--scores", help="its scores (JSON) [--experiment: from the study's results]")
    parser.add_argument("--card", type=Path, help="also write a draft model card to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace a packaged model (and --card)")
    args = parser.parse_args(argv)
    if (args.adapter_dir is None) == (args.experiment is None):
        parser.error("give either ADAPTER_DIR or --experiment CONFIG")
    if args.experiment is None and (args.cells or args.output or args.max_conversations or args.compare_only):
        parser.error("--cells, --output, --max-conversations and --compare-only go with --experiment")
    heldout_only = (
        args.types != DEFAULT_TYPES,
        args.max_passages,
        args.decoding,
        args.threshold != DEFAULT_THRESHOLD,
        args.multi_label,
        args.every_mention,
        args.choose_threshold,
        args.heldout != "training",
        args.per_benchmark != DEFAULT_PER_BENCHMARK,
    )
    if args.by != "heldout-f1" and any(heldout_only):
        parser.error(
            "--heldout, --per-benchmark, --types, --max-passages, --decoding, --threshold, "
            "--choose-threshold, --multi-label and --every-mention go with --by heldout-f1"
        )
    if not 0 <= args.threshold <= 1:
        parser.error(f"--threshold must be a number from 0 to 1, not {args.threshold}")
    if args.every_mention and (
        args.multi_label or args.threshold != DEFAULT_THRESHOLD or args.choose_threshold
    ):
        parser.error(
            "--every-mention keeps every mention: drop --threshold, --choose-threshold and --multi-label"
        )
    if args.heldout == "benchmarks" and (args.types != DEFAULT_TYPES or args.max_passages):
        parser.error("--types and --max-passages go with --heldout training; use --per-benchmark")
    if args.heldout == "training" and args.per_benchmark != DEFAULT_PER_BENCHMARK:
        parser.error("--per-benchmark goes with --heldout benchmarks")
    if args.choose_threshold and args.threshold != DEFAULT_THRESHOLD:
        parser.error("--choose-threshold chooses the threshold: drop --threshold")
    if args.by == "heldout-f1" and (args.experiment is None or args.max_conversations):
        parser.error("--by heldout-f1 goes with --experiment (and not --max-conversations)")
    if args.experiment is not None and args.selection is not None:
        parser.error("with --experiment the selection is the comparison; drop --selection")
    try:
        if args.card is not None and args.card.exists() and not args.overwrite:
            raise RaitError(f"{args.card} exists; pass --overwrite to replace it")
        if args.experiment is not None and not args.compare_only and builtin_path(args.name).exists():
            if not args.overwrite:  # before the comparison, which takes a while
                raise RaitError(
                    f"built-in model {args.name} is already packaged; pass --overwrite to replace it"
                )
        adapter_dir, selection = args.adapter_dir, args.selection and json_option(args.selection)
        scores = json_option(args.scores) if args.scores is not None else None
        settings, pool = None, None
        if args.experiment is not None:
            config, selection = compare_heldout_f1(args) if args.by == "heldout-f1" else compare(args)
            if args.compare_only:
                return 0
            chosen = selection["chosen"]
            if args.by == "heldout-f1":
                settings, pool = shipped_settings(config, chosen, selection["choice"])
                chosen = chosen["cell"]
                adapter_dir = config.output_dir / _model_path(config, chosen)
            else:
                adapter_dir = config.output_dir / selection["chosen_path"]
            if scores is None:
                scores = experiment_scores(config, chosen)
        metadata = {"source": args.source or str(adapter_dir)}
        if selection is not None:
            metadata["selection"] = selection
        if scores is not None:
            metadata["scores"] = scores
        target = package_adapter(
            adapter_dir, args.name, metadata=metadata, overwrite=args.overwrite, settings=settings, pool=pool
        )
        print(f"packaged {args.name} in {target}")
        if args.card is not None:
            args.card.write_text(model_card(args.name), encoding="utf-8")
            print(f"draft model card: {args.card}")
    except RaitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
