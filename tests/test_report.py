"""Report views on a fabricated results file: Markdown tables (bold best per block), plots, skipped views,
and their numbers in scores.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rait.cli import app
from rait.errors import DataError
from rait.report import SCORES_JSON, build_report, load_results, results_markdown, scores_json

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


def test_main_table_has_a_block_per_decoding(results, tmp_path):
    vanilla = [
        r for r in results["rows"] if r["method"] == "vanilla" and r["size"] == 500 and r["mode"] == "none"
    ]
    results["rows"] += [{**r, "decoding": "constrained", "f1": r["f1"] + 1} for r in vanilla]
    main = section(build_report(results, tmp_path).read_text(), "Main results")
    assert "| 500 | Vanilla IT | 21.00 | **31.00** | 26.00 |" in main  # the free block is unchanged
    assert "| 500, constrained decoding | Vanilla IT | 22.00 | 32.00 | 27.00 |" in main
    assert main.index("| 2,000 |") < main.index("| 500, constrained decoding |")


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
    assert "a split smaller than N is used whole" in pool
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
    # the 500-passage models of two seeds still have their spread; no other plot has data
    assert [p.name for p in tmp_path.glob("*.png")] == ["fig_seed_spread.png"]
    # the base model lacks one benchmark: its average is left out, not computed from the rest
    assert "| no fine-tuning | Base model | 5.00 | — | — |" in section(report, "Main results")


def test_results_markdown_lists_every_model_and_mode(results):
    text = results_markdown(results)
    assert "32 of 33 eval cells done" in text
    assert "| n500-vanilla-s2 | no examples | 22.00 | 32.00 | 27.00 |" in text
    assert "| n2000-ra-it-nn-k2-s1 | in-domain N=100 NN, k=2 | 44.00 | 50.00 | 47.00 |" in text


def test_capped_and_looped_answers_are_reported(results, tmp_path):
    assert "max_new_tokens" not in results_markdown(results)  # rows from before the counts existed
    for number, row in enumerate(results["rows"]):
        row.update(n_queries=10, n_capped=number % 2, n_repetition=1 if number == 0 else 0)
    line = "Decoding: 16 of 320 answers hit the `max_new_tokens` cap (possibly cut), 1 stopped repeating"
    assert line in results_markdown(results)
    assert line in build_report(results, tmp_path).read_text()


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
    assert json.loads((tmp_path / "out" / SCORES_JSON).read_text())["experiment"] == "fabricated-fixture"
    assert "scores.json" in result.output


def _row(model: str, method: str, benchmark: str, sentences: dict) -> dict:
    """A results row of a size-100 model, inference without examples, with its per-sentence counts."""
    ra_it = method == "ra-it"
    counts = [sum(c[i] for c in sentences.values()) for i in range(3)]
    f1 = 100 * 2 * counts[0] / (counts[1] + counts[2])
    return {
        "model": model,
        "size": 100,
        "method": method,
        "strategy": "nn" if ra_it else None,
        "k": 2 if ra_it else None,
        "seed": 1,
        "mode": "none",
        "inference_strategy": None,
        "inference_k": None,
        "pool_size": None,
        "benchmark": benchmark,
        "precision": f1,
        "recall": f1,
        "f1": f1,
        "n_queries": len(sentences),
        "n_unparseable": 0,
        "sentences": sentences,
    }


def _sentences(right: set[int], n: int = 400) -> dict:
    """n sentences, one gold and one predicted mention each, right on ``right``: F1 = 100 x share right."""
    return {f"s{i}": [int(i in right), 1, 1] for i in range(n)}


@pytest.fixture
def paired_results() -> dict:
    """FABRICATED: vanilla right on half of each benchmark's 400 sentences; RA-IT on the same sentences plus
    100 more on "a" (+25 points, F1 75) and plus one more on "b" (+0.25)."""
    half = set(range(0, 400, 2))
    rows = [
        _row("v", "vanilla", "a", _sentences(half)),
        _row("v", "vanilla", "b", _sentences(half)),
        _row("r", "ra-it", "a", _sentences(half | set(range(1, 200, 2)))),
        _row("r", "ra-it", "b", _sentences(half | {1})),
    ]
    return {"experiment": "fabricated-paired", "benchmarks": ["a", "b"], "complete": True, "rows": rows}


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", text)]


def test_tables_show_bootstrap_intervals(paired_results, tmp_path):
    report = build_report(paired_results, tmp_path, samples=4000, seed=1).read_text()
    assert "95% percentile bootstrap interval over test sentences (4,000 resamples, seed 1)" in report
    main = section(report, "Main results")
    vanilla = next(line for line in main.splitlines() if "Vanilla IT" in line)
    # F1 50 on both benchmarks, each 50 -/+ 1.96 x 2.5 (standard error of a mean of 400 zeros and ones)
    a, a_low, a_high, b, b_low, b_high, avg, avg_low, avg_high = _numbers(vanilla.split("| 100 |")[1])
    assert (a, b, avg) == (50.0, 50.0, 50.0)
    assert (a_low, a_high) == pytest.approx((45.1, 54.9), abs=0.6)
    # the average of two independent resamples: standard error 2.5 / sqrt(2)
    assert (avg_low, avg_high) == pytest.approx((50 - 1.96 * 2.5 / 2**0.5, 50 + 1.96 * 2.5 / 2**0.5), abs=0.6)
    assert "**75.00** [" in main


def test_paired_differences_view(paired_results, tmp_path):
    report = build_report(paired_results, tmp_path, samples=4000, seed=1).read_text()
    paired = section(report, "RA-IT minus vanilla IT")
    lines = {line.split("|")[4].strip(): line for line in paired.splitlines() if line.startswith("| ")}
    a = _numbers(lines["a"])  # RA-IT, vanilla, delta, interval low, high, p
    assert a[:3] == [75.0, 50.0, 25.0] and a[3] > 20 and "< 0.00025" in lines["a"]
    b = _numbers(lines["b"])
    assert b[:3] == pytest.approx([50.25, 50.0, 0.25]) and b[3] == 0.0
    assert b[-1] == pytest.approx(1 - (1 - 1 / 400) ** 399, abs=0.03)  # one sentence: the analytic p
    avg = _numbers(lines["**Avg**"])
    assert avg[:3] == pytest.approx([62.625, 50.0, 12.625], abs=0.01) and avg[-1] < 0.001
    assert (tmp_path / "fig_paired_differences.png").read_bytes().startswith(PNG_HEADER)
    assert build_report(paired_results, tmp_path / "again", samples=4000, seed=1).read_text() == report


def test_results_without_sentence_counts_have_no_intervals(results, tmp_path):
    report = build_report(results, tmp_path).read_text()
    assert "Confidence intervals unavailable" in report
    paired = section(report, "RA-IT minus vanilla IT")
    assert "| 500 | RA-IT (NN, k=2) | no examples | crossner_ai | 25.00 | 21.00 | +4.00 | — | — |" in paired
    assert "|  |  |  | **Avg** | 27.00 | 26.00 | +1.00 | — | — |" in paired


def test_bad_sentence_counts_name_the_field(paired_results, tmp_path):
    paired_results["rows"][2]["sentences"]["s7"] = [1, 1]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(paired_results))
    with pytest.raises(DataError) as info:
        load_results(path)
    assert info.value.field == "rows[2].sentences.s7"
    paired_results["rows"][2]["sentences"]["s7"] = [1, 1, 1]
    paired_results["rows"][2]["f1"] = 70.0  # the counts give 75
    path.write_text(json.dumps(paired_results))
    with pytest.raises(DataError, match="the counts give F1 75.00, the row's f1 is 70.00") as info:
        load_results(path)
    assert info.value.field == "rows[2].sentences"


def test_report_command_bootstrap_options(paired_results, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(paired_results))
    result = CliRunner().invoke(app, ["report", str(path), "--bootstrap-samples", "500", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "(500 resamples, seed 3)" in (tmp_path / "report.md").read_text()


def test_model_selection_table(results, tmp_path):
    results["selection"] = {  # FABRICATED losses
        "n500-vanilla-s1": {
            "selected": {"learning_rate": 0.001, "epochs": 3.0},
            "candidates": [
                {"learning_rate": 0.0002, "epochs": 3.0, "validation_loss": 0.91, "path": "a"},
                {"learning_rate": 0.001, "epochs": 3.0, "validation_loss": 0.75, "path": "b"},
            ],
        }
    }
    table = section(build_report(results, tmp_path).read_text(), "Model selection")
    assert "| n500-vanilla-s1 | 0.0002 | 3 | 0.9100 |" in table
    assert "|  | 0.001 | 3 | **0.7500** |" in table


def test_paired_differences_cover_every_decoding(paired_results, tmp_path):
    constrained = [{**row, "decoding": "constrained"} for row in paired_results["rows"]]
    paired_results["rows"] += constrained
    paired = section(build_report(paired_results, tmp_path, samples=200).read_text(), "RA-IT minus vanilla")
    leads = [line.split("|")[3].strip() for line in paired.splitlines() if line.startswith("| 100 |")]
    assert leads == ["no examples", "no examples, constrained decoding"]


def test_decoding_differences(paired_results, tmp_path):
    """FABRICATED: the vanilla model's constrained answers are RA-IT's (right on 100 more sentences of "a" and
    one more of "b"), its constrained-words answers the free ones: known differences between decodings."""
    v_free, ra_it = paired_results["rows"][:2], paired_results["rows"][2:]
    vanilla = {"model": "v", "method": "vanilla", "strategy": None, "k": None}
    paired_results["rows"] += [{**r, **vanilla} for r in ra_it]
    for row in paired_results["rows"][4:]:
        row["decoding"] = "constrained"
    paired_results["rows"] += [{**r, "decoding": "constrained-words"} for r in v_free]
    report = build_report(paired_results, tmp_path, samples=4000, seed=1).read_text()
    view = section(report, "One decoding minus another")
    rows = [line.split("|")[1:-1] for line in view.splitlines() if line.startswith("| 100 ")]
    assert [[c.strip() for c in row[:5]] for row in rows] == [
        ["100", "Vanilla IT", "no examples", "constrained", "free"],
        ["100", "Vanilla IT", "no examples", "constrained-words", "free"],
        ["100", "Vanilla IT", "no examples", "constrained-words", "constrained"],
    ]
    constrained, words, words_vs_constrained = (_numbers("|".join(row[5:])) for row in rows)
    assert constrained[:3] == pytest.approx([62.625, 50.0, 12.625], abs=0.01)
    assert "< 0.00025" in "|".join(rows[0])
    assert words[:3] == [50.0, 50.0, 0.0] and words[3:5] == [0.0, 0.0]  # identical answers: no spread
    assert words_vs_constrained[:3] == pytest.approx([50.0, 62.625, -12.625], abs=0.01)
    assert words_vs_constrained[3] < -10 and words_vs_constrained[4] < -5
    scores = json.loads((tmp_path / SCORES_JSON).read_text())
    first = scores["decoding_differences"][0]
    assert (first["setting"]["decoding"], first["baseline"]["decoding"]) == ("constrained", "free")
    assert first["benchmarks"]["a"]["difference"] == 25
    assert first["average"]["difference"] == pytest.approx(12.625)
    assert len(scores["decoding_differences"]) == 3 and len(scores["differences"]) == 1  # RA-IT: free only
    alone = build_report(paired_results | {"rows": v_free}, tmp_path / "one").read_text()
    assert "One decoding" not in alone  # one decoding per model: no such section


def test_example_differences(paired_results, tmp_path):
    """FABRICATED: the RA-IT model with in-domain examples is right on 100 more sentences of "b" than
    without (+25 points there, +12.5 on average, "a" unchanged); with out-domain examples it gives the
    answers it gives without. A constrained in-domain setting has no constrained run without examples: no
    pair."""
    ra_it = paired_results["rows"][2:]
    in_domain = {"mode": "in-domain", "inference_strategy": "nn", "inference_k": 2, "pool_size": 100_000}
    more = _sentences(set(range(0, 400, 2)) | {1} | set(range(201, 400, 2)))
    paired_results["rows"] += [
        {**ra_it[0], **in_domain},
        {**_row("r", "ra-it", "b", more), **in_domain},
        *({**r, **in_domain, "decoding": "constrained"} for r in ra_it),
        *({**r, "mode": "out-domain", "inference_strategy": "nn_bm25", "inference_k": 2} for r in ra_it),
    ]
    report = build_report(paired_results, tmp_path, samples=4000, seed=1).read_text()
    view = section(report, "Examples at inference minus none")
    assert (
        "| Training data | Model | Decoding | Examples | F1 | Baseline F1 | Δ | 95% CI | p | Δ a | Δ b |"
        in view
    )
    rows = [
        [c.strip() for c in line.split("|")[1:-1]] for line in view.splitlines() if line.startswith("| 100 ")
    ]
    assert [row[:4] for row in rows] == [
        ["100", "RA-IT (NN, k=2)", "free", "out-domain NN+BM25, k=2"],
        ["100", "RA-IT (NN, k=2)", "free", "in-domain N=100,000 NN, k=2"],
    ]
    assert rows[0][4:] == ["62.62", "62.62", "+0.00", "[0.00, 0.00]", "1.000", "+0.00", "+0.00"]
    in_domain_row = _numbers("|".join(rows[1][4:]))
    assert in_domain_row[:3] == pytest.approx([75.125, 62.625, 12.5], abs=0.01)
    assert 10 < in_domain_row[3] < 12.5 < in_domain_row[4] < 15
    assert rows[1][-3:] == ["< 0.00025", "+0.00", "+25.00"]
    scores = json.loads((tmp_path / SCORES_JSON).read_text())
    found = scores["example_differences"]
    assert [(d["setting"]["mode"], d["baseline"]["mode"]) for d in found] == [
        ("out-domain", "none"),
        ("in-domain", "none"),
    ]
    assert found[1]["benchmarks"]["b"]["difference"] == 25 and found[1]["benchmarks"]["a"]["difference"] == 0
    assert found[1]["average"]["difference"] == pytest.approx(12.5)
    alone = build_report(paired_results | {"rows": paired_results["rows"][:4]}, tmp_path / "one").read_text()
    assert "Examples at inference" not in alone


def test_scores_json_holds_the_reports_numbers_with_intervals(paired_results, tmp_path):
    build_report(paired_results, tmp_path, samples=4000, seed=1)
    text = (tmp_path / SCORES_JSON).read_text()
    scores = json.loads(text)
    assert scores_json(paired_results, samples=4000, seed=1) == scores
    assert scores["interval"] == {
        "method": "95% percentile bootstrap over test sentences",
        "level": 0.95,
        "samples": 4000,
        "seed": 1,
    }
    assert scores["benchmarks"] == ["a", "b"] and scores["experiment"] == "fabricated-paired"
    vanilla, ra_it = scores["settings"]  # model order: vanilla IT first
    assert [vanilla[k] for k in ("method", "mode", "decoding", "cells")] == ["vanilla", "none", "free", ["v"]]
    assert (ra_it["model_label"], ra_it["inference_label"]) == ("RA-IT (NN, k=2)", "no examples")
    a = vanilla["benchmarks"]["a"]
    # F1 50 -/+ 1.96 x 2.5, as the table shows (test_tables_show_bootstrap_intervals)
    assert (a["f1"], a["precision"], a["recall"], a["n_queries"], a["n_unparseable"]) == (50, 50, 50, 400, 0)
    assert (a["low"], a["high"]) == pytest.approx((45.1, 54.9), abs=0.6)
    average = vanilla["average"]
    assert average["f1"] == 50 and (average["low"], average["high"]) == pytest.approx(
        (50 - 1.96 * 2.5 / 2**0.5, 50 + 1.96 * 2.5 / 2**0.5), abs=0.6
    )
    assert ra_it["benchmarks"]["a"]["f1"] == 75 and ra_it["benchmarks"]["b"]["f1"] == pytest.approx(50.25)
    (pair,) = scores["differences"]
    assert (pair["setting"]["method"], pair["baseline"]["method"]) == ("ra-it", "vanilla")
    diff_a, diff_b = pair["benchmarks"]["a"], pair["benchmarks"]["b"]
    assert (diff_a["f1"], diff_a["baseline_f1"], diff_a["difference"], diff_a["p"]) == (75, 50, 25, 0)
    assert diff_a["low"] > 20
    assert diff_b["difference"] == pytest.approx(0.25) and diff_b["low"] == 0
    assert diff_b["p"] == pytest.approx(1 - (1 - 1 / 400) ** 399, abs=0.03)  # one sentence: the analytic p
    assert pair["average"]["difference"] == pytest.approx(12.625) and pair["average"]["p"] < 0.001
    build_report(paired_results, tmp_path / "again", samples=4000, seed=1)
    assert (tmp_path / "again" / SCORES_JSON).read_text() == text  # byte for byte


def test_scores_json_without_sentence_counts(results):
    vanilla = [
        r for r in results["rows"] if r["method"] == "vanilla" and r["size"] == 500 and r["mode"] == "none"
    ]
    results["rows"] += [{**r, "decoding": "constrained", "f1": r["f1"] + 1} for r in vanilla]
    scores = scores_json(results)
    assert scores["interval"] is None and not scores["complete"]
    settings = scores["settings"]
    assert len(settings) == 15 and len({json.dumps(s) for s in settings}) == 15
    base = settings[0]
    assert base["model_label"] == "Base model" and base["average"] == {"f1": 4.0}
    free = next(s for s in settings if s["method"] == "vanilla" and s["size"] == 500 and s["mode"] == "none")
    assert free["cells"] == ["n500-vanilla-s1", "n500-vanilla-s2"]  # seeds averaged, counts summed
    assert free["benchmarks"]["crossner_ai"] == {
        "f1": 21.0,
        "precision": 21.0,
        "recall": 21.0,
        "n_queries": 200,
        "n_unparseable": 0,
    }
    assert free["average"] == {"f1": 26.0}
    constrained = settings[-1]  # after every free-decoding setting
    assert constrained["decoding"] == "constrained" and constrained["average"] == {"f1": 27.0}
    assert constrained["inference_label"] == "no examples, constrained decoding"
    pair = scores["differences"][0]
    assert (pair["setting"]["size"], pair["setting"]["strategy"]) == (500, "nn")
    assert pair["benchmarks"]["crossner_ai"] == {"f1": 25.0, "baseline_f1": 21.0, "difference": 4.0}
    assert pair["average"] == {"f1": 27.0, "baseline_f1": 26.0, "difference": 1.0}
    results["rows"] = [
        r for r in results["rows"] if not (r["model"] == "base" and r["benchmark"] == "mit_movie")
    ]
    assert scores_json(results)["settings"][0]["average"] is None


def test_p_values_keep_their_first_digit():
    from rait.report.views import _p

    assert _p(0.0, 10_000) == "< 0.0001"
    assert _p(0.0002, 10_000) == "0.0002"  # not "0.000"
    assert _p(0.0123, 10_000) == "0.012"
    assert _p(None, 10_000) == "—"


def test_strategy_differences(paired_results, tmp_path):
    """FABRICATED: an RA-IT model trained with Random retrieval gives the vanilla model's answers, so NN minus
    Random is RA-IT minus vanilla (+25 on "a", +0.25 on "b", +12.625 on average); an NN+BM25 model gives
    NN's answers (a zero difference to NN, +12.625 to Random). A Random model of another size has no pair."""
    vanilla, ra_it = paired_results["rows"][:2], paired_results["rows"][2:]
    random = {"model": "rnd", "method": "ra-it", "strategy": "random", "k": 2}
    paired_results["rows"] += [
        *({**r, **random} for r in vanilla),
        *({**r, "model": "bm", "strategy": "nn_bm25"} for r in ra_it),
        *({**r, **random, "size": 50} for r in vanilla),
    ]
    report = build_report(paired_results, tmp_path, samples=4000, seed=1).read_text()
    view = section(report, "One retrieval strategy in training minus another")
    assert "| Training data | Inference | Strategy | Baseline | F1 | Baseline F1 | Δ |" in view
    rows = [
        [c.strip() for c in line.split("|")[1:-1]] for line in view.splitlines() if line.startswith("| 100, ")
    ]
    assert [row[:4] for row in rows] == [
        ["100, k=2", "no examples", "NN", "NN+BM25"],
        ["100, k=2", "no examples", "NN", "Random"],
        ["100, k=2", "no examples", "NN+BM25", "Random"],
    ]
    assert rows[0][4:] == ["62.62", "62.62", "+0.00", "[0.00, 0.00]", "1.000", "+0.00", "+0.00"]
    nn_random = _numbers("|".join(rows[1][4:]))
    assert nn_random[:3] == pytest.approx([62.625, 50.0, 12.625], abs=0.01)
    assert rows[1][-2:] == ["+25.00", "+0.25"]
    assert rows[1][8] == "< 0.00025" and rows[2][4:] == rows[1][4:]
    assert len(rows) == 3 and "| 50, " not in view
    found = json.loads((tmp_path / SCORES_JSON).read_text())["strategy_differences"]
    assert [(d["setting"]["strategy"], d["baseline"]["strategy"]) for d in found] == [
        ("nn", "nn_bm25"),
        ("nn", "random"),
        ("nn_bm25", "random"),
    ]
    assert found[1]["benchmarks"]["a"]["difference"] == 25
    assert found[1]["average"]["difference"] == pytest.approx(12.625)
    alone = build_report(paired_results | {"rows": paired_results["rows"][:4]}, tmp_path / "one").read_text()
    assert "One retrieval strategy" not in alone


def test_seed_spread(paired_results, tmp_path):
    """FABRICATED: RA-IT trained three times (average F1 62.5, 50 and 37.5: mean 50, SD 12.5); vanilla once.
    The view lists each run, the mean, the SD and an interval that resamples runs and sentences, wider than
    the single run's; scores.json carries the same numbers."""
    half = set(range(0, 400, 2))
    rows = [r for r in paired_results["rows"] if r["model"] == "v"]
    for model, extra in (("r1", set(range(1, 200, 2))), ("r2", set()), ("r3", None)):
        right = half | extra if extra is not None else set(range(0, 200, 2))
        for benchmark in ("a", "b"):
            row = _row(model, "ra-it", benchmark, _sentences(right if benchmark == "a" else half))
            rows.append(row | {"train_seed": int(model[1])})
    results = {**paired_results, "rows": rows}
    report = build_report(results, tmp_path, samples=2000, seed=1).read_text()
    spread = section(report, "Spread between training runs")
    line = next(line for line in spread.splitlines() if "RA-IT" in line)
    assert "| 3 | 62.50, 50.00, 37.50 | 50.00 | 12.50 | [" in line
    low, high = _numbers(line.split("| 12.50 |")[1])
    assert low < 40 and high > 57  # the run-to-run spread is in the interval, not sentences alone (+-3.5)
    assert "Vanilla" not in spread and (tmp_path / "fig_seed_spread.png").read_bytes().startswith(PNG_HEADER)
    found = json.loads((tmp_path / SCORES_JSON).read_text())["seed_spread"]
    assert [entry["runs"] for entry in found] == [{"r1": 62.5, "r2": 50.0, "r3": 37.5}]
    assert (found[0]["mean"], found[0]["sd"]) == (50.0, 12.5)
    assert "seed_spread" not in scores_json(paired_results, samples=100)


def test_findings_say_whether_each_comparison_points_the_papers_way(paired_results, tmp_path):
    """FABRICATED: RA-IT beats vanilla IT by 12.6 (clear of zero); an RA-IT model trained with Random
    examples beats the NN one by 0.125 on average (the paper's direction reversed, not clear of zero)."""
    half = set(range(0, 400, 2))
    random_rows = [
        _row("x", "ra-it", "a", _sentences(half | set(range(1, 200, 2)) | {201})) | {"strategy": "random"},
        _row("x", "ra-it", "b", _sentences(half | {1})) | {"strategy": "random"},
    ]
    results = {**paired_results, "rows": paired_results["rows"] + random_rows}
    report = build_report(results, tmp_path, samples=2000, seed=1).read_text()
    found = section(report, "The paper's findings").splitlines()
    method = next(line for line in found if "RA-IT (NN, k=2) - vanilla IT" in line)
    assert method.startswith("| Table 1 / Table 2 |") and "| +12.62 | [" in method
    assert method.endswith("| yes |")
    similar = next(line for line in found if "NN - Random" in line)
    assert "| -0.12 | [" in similar and similar.endswith("| no, not clear of zero |")
    rows = json.loads((tmp_path / SCORES_JSON).read_text())["findings"]
    assert [row["same_direction"] for row in rows] == ["yes", "no, not clear of zero"]
    assert rows[0]["low"] > 0 and rows[1]["low"] < 0 <= rows[1]["high"]


def test_findings_without_intervals_and_without_comparisons(results, tmp_path):
    from rait.report.findings import direction

    assert direction(1.5, None) == "yes (no interval)" and direction(-0.2, None) == "no (no interval)"
    report = build_report(results, tmp_path).read_text()
    assert "(no interval)" in section(report, "The paper's findings")
    lone = {**results, "rows": [r for r in results["rows"] if r["method"] == "base"]}
    assert "The paper's findings" not in build_report(lone, tmp_path).read_text()


def test_a_training_recipe_is_another_model_not_a_seed(paired_results, tmp_path):
    """FABRICATED: vanilla IT with the recipe "neg10" is right on 100 more sentences of "a" (+25 points)
    than plain vanilla IT; it is shown as its own model, compared with the plain one, never averaged with
    it."""
    half = set(range(0, 400, 2))
    neg10 = [
        _row("v-neg10", "vanilla", "a", _sentences(half | set(range(1, 200, 2)))) | {"recipe": "neg10"},
        _row("v-neg10", "vanilla", "b", _sentences(half)) | {"recipe": "neg10"},
    ]
    results = {**paired_results, "rows": paired_results["rows"] + neg10}
    report = build_report(results, tmp_path, samples=2000, seed=1).read_text()
    main = section(report, "Main results")
    assert "| Vanilla IT | 50.00 [" in main and "| Vanilla IT [neg10] | **75.00** [" in main
    recipes = section(report, "One training recipe minus the plain one")
    line = next(line for line in recipes.splitlines() if "| neg10 |" in line)
    assert line.startswith("| 100 | Vanilla IT | no examples | neg10 | 62.50 | 50.00 | +12.50 | [")
    assert "Spread between training runs" not in report
    found = json.loads((tmp_path / SCORES_JSON).read_text())
    assert [d["setting"]["recipe"] for d in found["recipe_differences"]] == ["neg10"]
    assert "recipe" not in found["settings"][0]  # the plain recipe's settings read as before recipes


def test_every_setting_against_a_baseline_model(paired_results, tmp_path):
    """FABRICATED: with --baseline v (vanilla IT), RA-IT and vanilla's own neg10 recipe are each compared
    with it (an unknown model: tests/test_cli_errors.py)."""
    half = set(range(0, 400, 2))
    neg10 = [_row("v-neg10", "vanilla", b, _sentences(half | {1})) | {"recipe": "neg10"} for b in ("a", "b")]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**paired_results, "rows": paired_results["rows"] + neg10}))
    args = ["report", str(path), "--bootstrap-samples", "500", "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--baseline", "v"])
    assert result.exit_code == 0, result.output
    view = section((tmp_path / "out" / "report.md").read_text(), "Every setting minus v without examples")
    rows = [line for line in view.splitlines() if line.startswith("| 100 |")]
    assert [row.split(" | ")[1] for row in rows] == ["Vanilla IT [neg10]", "RA-IT (NN, k=2)"]
    assert "| 62.62 | 50.00 | +12.62 |" in rows[1]
    found = json.loads((tmp_path / "out" / SCORES_JSON).read_text())
    assert found["baseline"] == "v" and len(found["baseline_differences"]) == 2
