"""Report views on a fabricated results file: Markdown tables (bold best per block), plots, skipped views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rait.cli import app
from rait.errors import DataError
from rait.report import build_report, load_results, results_markdown

FIXTURE = Path(__file__).parent / "fixtures" / "experiments" / "fabricated_fixture_results.json"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
PLOTS = ("fig2_data_size.png", "fig3_strategies.png", "fig4_out_domain.png", "fig5_pool_size.png")


@pytest.fixture
def results() -> dict:
    return load_results(FIXTURE)


def section(report: str, title_start: str) -> str:
    """The text of one ``## `` section of report.md."""
    for part in report.split("\n## ")[1:]:
        if part.startswith(title_start):
            return part
    raise AssertionError(f"no section {title_start!r} in the report")


def test_main_table_averages_seeds_and_bolds_best_per_block(results, tmp_path):
    report = build_report(results, tmp_path).read_text()
    main = section(report, "Main results")
    # size 500: two seeds each -> vanilla (20+22)/2, (30+32)/2; RA-IT (24+26)/2, (28+30)/2
    assert "| 500 | Vanilla IT | 21.00 | **31.00** | 26.00 |" in main
    assert "|  | RA-IT (NN, k=2) | **25.00** | 29.00 | **27.00** |" in main
    # the single-row base block is not bolded; in the 2,000 block NN+BM25 wins mit_movie, NN the rest
    assert "| no fine-tuning | Base model | 5.00 | 3.00 | 4.00 |" in main
    assert "|  | RA-IT (NN+BM25, k=2) | 33.00 | **43.00** | 38.00 |" in main
    assert "|  | RA-IT (NN, k=2) | **36.00** | 41.00 | **38.50** |" in main
    assert main.index("| 500 |") < main.index("| 2,000 |")
    assert "**Incomplete:** 1 eval cell(s)" in report


def test_study_views(results, tmp_path):
    report = build_report(results, tmp_path).read_text()
    sizes = section(report, "Training data size")
    assert "|  | Vanilla IT | 26.00 | 35.00 |" in sizes and "|  | RA-IT (NN, k=2) | 27.00 | 38.50 |" in sizes
    strategies = section(report, "Retrieval strategies")
    assert "| 2,000, k=2 | Vanilla IT | 30.00 | 40.00 | 35.00 |" in strategies
    assert "|  | Random | 31.00 | 39.00 | 35.00 |" in strategies
    out_domain = section(report, "Out-domain")
    assert "| Vanilla IT (2,000) | **35.00** | 32.00 | — |" in out_domain
    assert "| RA-IT (NN, k=2) (2,000) | 38.50 | **39.50** | 37.50 |" in out_domain
    pool = section(report, "In-domain")
    assert "| N=0 | N=10 | N=100 |" in pool and "| 38.50 | 42.50 | **47.00** |" in pool
    k = section(report, "Number of examples")
    assert "|  | k=2 | **36.00** | **41.00** | **38.50** |" in k and "| 2,000, NN | k=1 | 34.00 |" in k
    assert "Skipped" not in report


def test_plots_are_written_and_linked(results, tmp_path):
    report = build_report(results, tmp_path / "report").read_text()
    for name in PLOTS:
        data = (tmp_path / "report" / name).read_bytes()
        assert data.startswith(PNG_HEADER) and len(data) > 5000, name
        assert f"]({name})" in report


def test_views_without_data_are_skipped_with_a_note(results, tmp_path):
    results["rows"] = [r for r in results["rows"] if r["mode"] == "none" and r["size"] in (None, 500)]
    results["rows"] = [
        r for r in results["rows"] if not (r["model"] == "base" and r["benchmark"] == "mit_movie")
    ]
    report = build_report(results, tmp_path).read_text()
    assert report.count("_Skipped:") == 5
    assert "_Skipped: no results with in-domain examples at inference._" in report
    assert not list(tmp_path.glob("*.png"))
    # the base model lacks one benchmark: its average is left out, not computed from the rest
    assert "| no fine-tuning | Base model | 5.00 | — | — |" in section(report, "Main results")


def test_results_markdown_lists_every_model_and_mode(results):
    text = results_markdown(results)
    assert "32 of 33 eval cells done" in text
    assert "| n500-vanilla-s2 | no examples | 22.00 | 32.00 | 27.00 |" in text
    assert "| n2000-ra-it-nn-k2-s1 | in-domain N=100 NN, k=2 | 44.00 | 50.00 | 47.00 |" in text


def test_bad_results_file_names_the_field(tmp_path):
    data = json.loads(FIXTURE.read_text())
    del data["rows"][3]["f1"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        load_results(path)
    assert info.value.field == "rows[3].f1" and info.value.path == str(path)
    path.write_text("[]")
    with pytest.raises(DataError, match="not an experiment results file"):
        load_results(tmp_path)  # a directory holding results.json


def test_report_command(tmp_path):
    result = CliRunner().invoke(app, ["report", str(FIXTURE), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").read_text().startswith("# Report: fabricated-fixture")
    assert all((tmp_path / "out" / name).is_file() for name in PLOTS)
