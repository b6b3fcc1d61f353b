"""Every command's bad input is one line naming what is wrong, exit code 1, no traceback, nothing written;
text from data files is printed as it is, never read as rich markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rait.commands.data
from rait.cli import main
from rait.locks import output_lock

LATIN1 = "Ada\tB-PER\n\nJos\xe9\tB-PER\n".encode("latin-1")
MISSING_MODEL = "/nonexistent/model"  # a command that got as far as loading a model would fail differently


def run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["rait", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "400")  # one error line stays one line
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_one_line_error(code: int, output: str, *words: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for word in words:
        assert word in lines[0], output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(LATIN1)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    bio = tmp_path / "ok.txt"
    bio.write_text("Ada\tB-PER\nmet\tO\n")
    return {"latin": latin, "empty": empty, "bio": bio, "dir": tmp_path}


PREDICT = ("predict", "-m", MISSING_MODEL, "-o", "{dir}/p.jsonl")
CASES = {  # arguments ({name} is a file of the fixture), words of the error line
    "evaluate non-UTF-8": (["evaluate", "{latin}"], ["latin1.txt, line 3", "not UTF-8"]),
    "evaluate a directory": (["evaluate", "{dir}"], ["is a directory"]),
    "predict non-UTF-8 .txt": ([*PREDICT, "-i", "{latin}", "--types", "person"], ["line 3", "not UTF-8"]),
    "predict empty .txt": ([*PREDICT, "-i", "{empty}", "--types", "person"], ["empty"]),
    "predict --lang fr": ([*PREDICT, "-b", "crossner_ai", "--lang", "fr"], ["--lang 'fr'"]),
    "predict --max-examples -3": (
        [*PREDICT, "-b", "crossner_ai", "--max-examples", "-3"],
        ["--max-examples"],
    ),
    "predict --pool-size -1": (
        [*PREDICT, "-b", "crossner_ai", "--examples", "in-domain", "--pool-size", "-1"],
        ["--pool-size"],
    ),
    "predict -k with --examples none": ([*PREDICT, "-b", "crossner_ai", "-k", "3"], ["-k has no effect"]),
    "predict --types with -b": (
        [*PREDICT, "-b", "crossner_ai", "--types", "x"],
        ["--types applies to --input"],
    ),
    "predict output is a directory": ([*PREDICT, "-i", "{bio}", "-o", "{dir}"], ["is a directory"]),
    "convert --lang fr": (
        ["convert", "{bio}", "{dir}/o.json", "--to", "uniner", "--lang", "fr"],
        ["--lang 'fr'"],
    ),
    "convert --from bio on an empty file": (
        ["convert", "{empty}", "{dir}/o.jsonl", "--from", "bio"],
        ["empty"],
    ),
    "convert output is a directory": (["convert", "{bio}", "{dir}"], ["is a directory"]),
    "train non-UTF-8 data": (["train", "{latin}", "-o", "{dir}/run", "-m", MISSING_MODEL], ["not UTF-8"]),
    "train --lr-scheduler foo": (
        ["train", "{bio}", "-o", "{dir}/run", "--lr-scheduler", "foo"],
        ["lr_scheduler must be one of"],
    ),
    "experiment non-UTF-8 config": (["experiment", "{latin}"], ["not UTF-8", "line 3"]),
    "experiment --collect --dry-run": (
        ["experiment", "{bio}", "--collect", "--dry-run"],
        ["exclude each other"],
    ),
    "report non-UTF-8 results": (["report", "{latin}"], ["not UTF-8"]),
    "distill --chunk-tokens 0": (
        ["distill", "{bio}", "-o", "{dir}/d.jsonl", "--chunk-tokens", "0"],
        ["--chunk-tokens"],
    ),
    "distill an empty corpus": (
        ["distill", "{empty}", "-o", "{dir}/d.jsonl", "--no-progress"],
        ["no text to annotate"],
    ),
    "distill -n -4": (["distill", "{bio}", "-o", "{dir}/d.jsonl", "-n", "-4"], ["-n must be"]),
    "build-data -k with vanilla": (
        ["build-data", "{bio}", "-o", "{dir}/b.jsonl", "--method", "vanilla", "-k", "3"],
        ["-k has no effect"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(monkeypatch, capsys, files, case):
    args, words = CASES[case]
    args = [
        arg.format(**files) for arg in args
    ]  # the last -o wins: "output is a directory" overrides PREDICT's
    code, output = run(monkeypatch, capsys, *args)
    assert_one_line_error(code, output, *words)
    assert not (files["dir"] / "p.jsonl").exists() and not (files["dir"] / "o.jsonl").exists()


def test_a_full_disk_is_one_line(monkeypatch, capsys, files):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(files["dir"] / "o.jsonl"))

    monkeypatch.setattr(rait.commands.data, "convert", full)
    code, output = run(monkeypatch, capsys, "convert", files["bio"], files["dir"] / "o.jsonl")
    assert_one_line_error(code, output, "No space left on device", "o.jsonl")


def test_evaluate_strict_spans_checks_spans_against_the_text(monkeypatch, capsys, tmp_path):
    row = {
        "benchmark": "b", "record_id": "1", "type": "person", "gold": ["Ada"], "output": '["Ada"]',
        "text": "Ada met Bo", "gold_spans": [[4, 7]], "predicted_spans": [[0, 3]],
    }  # fmt: skip
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    code, output = run(monkeypatch, capsys, "evaluate", path, "--strict-spans")
    assert_one_line_error(code, output, "line 1", "gold_spans", "'met'")
    row |= {"gold_spans": [[0, 3]], "predicted_spans": [[8, 30]]}
    path.write_text(json.dumps(row) + "\n")
    assert_one_line_error(*run(monkeypatch, capsys, "evaluate", path, "--strict-spans"), "outside the text")


def test_report_refuses_scores_outside_0_to_100(monkeypatch, capsys, tmp_path):
    keys = ("model", "size", "method", "strategy", "k", "seed", "mode", "inference_strategy", "inference_k",
            "pool_size", "benchmark")  # fmt: skip
    row = dict.fromkeys(keys, None) | {"benchmark": "b", "f1": 150.0}
    (tmp_path / "results.json").write_text(json.dumps({"rows": [row], "benchmarks": ["b"]}))
    code, output = run(monkeypatch, capsys, "report", tmp_path / "results.json")
    assert_one_line_error(code, output, "rows[0].f1", "0 to 100")


def test_a_locked_output_names_the_other_process(monkeypatch, capsys, tmp_path):
    out = tmp_path / "p.jsonl"
    script = (
        "import time\nfrom rait.locks import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        text = tmp_path / "t.txt"
        text.write_text("Ada met Bo.\n")
        args = ("predict", "-m", MISSING_MODEL, "-i", text, "--types", "person", "-o", out)
        code, output = run(monkeypatch, capsys, *args)
        assert code == 1 and "Traceback" not in output
        assert output.strip().splitlines()[-1].startswith("error: ") and f"pid {holder.pid}" in output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # the kernel released the killed holder's lock
        pass


# ------------------------------------------------------------------------------------------------ markup

BRACKETS = "[/b] [red]x[/red] [start, end]"


def test_bracketed_data_text_prints_as_it_is_in_every_command(monkeypatch, capsys, tmp_path):
    weird = tmp_path / "[red]data[b]"
    weird.mkdir()
    # convert: an error quoting a line of the file, and the skipped-items messages
    bad = weird / "bad.txt"
    bad.write_text(f"Ada\tB-PER\nx\t{BRACKETS}\n")
    assert_one_line_error(*run(monkeypatch, capsys, "convert", bad, tmp_path / "o.jsonl"), BRACKETS)
    code, output = run(monkeypatch, capsys, "convert", bad, tmp_path / "o.jsonl", "--skip-bad")
    assert code == 0 and BRACKETS in output and "[red]data[b]" in output
    # rait's own message about spans keeps its brackets
    gliner = tmp_path / "g.json"
    gliner.write_text(
        json.dumps([{"sentence": "a b", "entities": [{"name": "a", "type": "x", "pos": [0, 1, 2]}]}])
    )
    assert_one_line_error(*run(monkeypatch, capsys, "convert", gliner, tmp_path / "g.jsonl"), "[start, end]")
    # evaluate: benchmark names in the table
    row = {"benchmark": BRACKETS, "record_id": "1", "type": "t", "gold": ["a"], "output": '["a"]'}
    preds = weird / "p.jsonl"
    preds.write_text(json.dumps(row) + "\n")
    code, output = run(monkeypatch, capsys, "evaluate", preds)
    assert code == 0 and BRACKETS in output and "[red]data[b]" in output
    # predict, build-data, train, experiment, report, distill, benchmarks: paths and data in their messages
    for args in (
        ("predict", "-m", MISSING_MODEL, "-i", bad, "--types", "person", "-o", tmp_path / "p.jsonl"),
        ("build-data", bad, "-o", tmp_path / "b.jsonl", "--method", "vanilla"),
        ("train", bad, "-o", tmp_path / "run"),
        ("experiment", bad),
        ("report", bad),
        ("distill", weird / "none.txt", "-o", tmp_path / "d.jsonl"),
    ):
        code, output = run(monkeypatch, capsys, *args)
        assert code == 1 and "Traceback" not in output and "[red]data[b]" in output, (args, output)
    monkeypatch.setenv("RAIT_DATA_DIR", str(weird))
    code, output = run(monkeypatch, capsys, "benchmarks")
    assert code == 0 and "[red]data[b]" in output.replace("\n", "")
