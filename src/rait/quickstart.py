"""``rait quickstart``: the whole RA-IT pipeline on the repo's own sample data, on a CPU, in minutes.

Stages, each skipped when its output is already complete (so an interrupted run picks up where it
stopped): build RA-IT training conversations from ``sample_path("en", "train")`` (2 retrieved examples
per passage); LoRA-train SmolLM2-135M-Instruct on them; predict the held-out ``sample_path("en", "test")``
passages; score them. Training is cut to ``max_steps`` optimizer steps so that the run stays short; the
scores show the pipeline working end to end, not what the method reaches with real data and models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rait.console import make_console
from rait.data.benchmarks import sample_path
from rait.errors import RaitError
from rait.evaluation import EvalReport, evaluate_file, render_table
from rait.fileio import read_jsonl, write_json
from rait.inference import PredictConfig, PredictStats, entities_from_answers, run_predict
from rait.models import DEFAULT_MODEL
from rait.records import DEFAULT_SEED

QUICKSTART_STEPS = 12


@dataclass(slots=True)
class QuickstartResult:
    """Paths of what a quickstart run produced, its scores, and the stages it skipped as already done."""

    data: Path
    adapter: Path
    predictions: Path
    report: EvalReport
    predict_stats: PredictStats
    skipped: list[str] = field(default_factory=list)


def run_quickstart(
    workdir: str | Path,
    *,
    model: str = DEFAULT_MODEL,
    lang: str = "en",
    max_steps: int = QUICKSTART_STEPS,
    learning_rate: float = 2e-3,
    batch_size: int = 4,
    max_new_tokens: int = 48,
    embedder: str | None = None,
    seed: int = DEFAULT_SEED,
    console: Console | None = None,
    progress: bool = True,
) -> QuickstartResult:
    """Build data, train, predict and evaluate under ``workdir``; print the F1 table and a few extractions.

    Defaults are tuned for a 2-core CPU (a short, high learning-rate LoRA run); ``model``, ``max_steps``
    etc. let tests and bigger machines change them. Outputs: ``data/train.jsonl`` (+ manifest),
    ``adapter/`` (LoRA adapter, training log), ``predictions.jsonl``, ``metrics.json``."""
    from rait.build_data import BuildConfig, build_data
    from rait.training import SUMMARY_FILE, TrainConfig, train

    if lang not in ("en", "zh"):
        raise RaitError(f"unknown --lang {lang!r}; the quickstart has sample data for en and zh")
    console = console or make_console()
    workdir = Path(workdir)
    data = workdir / "data" / "train.jsonl"
    adapter = workdir / "adapter"
    predictions = workdir / "predictions.jsonl"
    skipped: list[str] = []

    if data.is_file():
        skipped.append("build")
    else:
        console.print(f"[bold]1/4 build[/] RA-IT training data from {sample_path(lang, 'train').name}")
        build_data(
            BuildConfig(
                source=str(sample_path(lang, "train")),
                output=data,
                method="ra-it",
                lang=lang,
                format="sharegpt",
                embedder=embedder,
                seed=seed,
                show_progress=progress,
            )
        )
    if (adapter / SUMMARY_FILE).is_file():
        skipped.append("train")
    else:
        console.print(f"[bold]2/4 train[/] LoRA on {model}, {max_steps} steps")
        train(
            TrainConfig(
                data=[str(data)],
                output_dir=str(adapter),
                model=model,
                max_steps=max_steps,
                batch_size=batch_size,
                per_device_batch_size=batch_size,
                learning_rate=learning_rate,
                warmup_ratio=0.0,
                save_steps=max(1, max_steps // 4),
                logging_steps=max(1, max_steps // 10),
                seed=seed,
                resume=(adapter / "checkpoints").is_dir(),
            )
        )
    console.print(f"[bold]3/4 predict[/] held-out {sample_path(lang, 'test').name}")
    stats = run_predict(
        PredictConfig(
            output=predictions,
            model=str(adapter),
            input=sample_path(lang, "test"),
            lang=lang,
            max_new_tokens=max_new_tokens,
            # a 12-step model's pipeline check, comparable with earlier runs: the paper's free decoding,
            # every mention and type kept (its scores are written all the same)
            decoding="free",
            threshold=None,
            multi_label=True,
        ),
        progress=progress,
    )
    if stats.n_predicted == 0:
        skipped.append("predict")
    console.print("[bold]4/4 evaluate[/]")
    report = evaluate_file(predictions)
    write_json(workdir / "metrics.json", report.to_dict())
    console.print(render_table(report))
    console.print(extraction_table(predictions))
    if skipped:
        console.print(f"already done, skipped: {', '.join(skipped)}", highlight=False)
    return QuickstartResult(data, adapter, predictions, report, stats, skipped)


def extraction_table(predictions: str | Path, n_passages: int = 3) -> Table:
    """The first passages of a predictions file with the entities found and the gold ones."""
    passages: dict[str, dict] = {}
    for _, row in read_jsonl(predictions):
        passage = passages.setdefault(
            row["record_id"], {"text": row["text"], "types": [], "answers": [], "gold": []}
        )
        passage["types"].append(row["type"])
        passage["answers"].append(row["output"])
        passage["gold"] += [f"{m} ({row['type']})" for m in row["gold"]]
    if not passages:
        raise RaitError(f"{predictions} has no predictions")
    table = Table(title="Extracted entities", show_lines=True)
    for column in ("Passage", "Predicted", "Gold"):
        table.add_column(column)
    for passage in list(passages.values())[:n_passages]:
        entities, _ = entities_from_answers(passage["text"], passage["types"], passage["answers"])
        predicted = [
            f"{e['text']} ({e['type']})" + ("" if e["found"] else " [not in text]") for e in entities
        ]
        cells = (passage["text"], "\n".join(predicted) or "-", "\n".join(passage["gold"]) or "-")
        table.add_row(*(Text(cell) for cell in cells))  # Text: brackets in the data are not markup
    return table
