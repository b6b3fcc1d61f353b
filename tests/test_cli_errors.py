"""Every command's bad input is one line naming what is wrong, exit code 1, no traceback, nothing written;
text from data files is printed as it is, never read as rich markup."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
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
    deep_json, deep_jsonl = tmp_path / "deep.json", tmp_path / "deep.jsonl"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    deep_jsonl.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    bad_bio = tmp_path / "bad_bio.txt"
    bad_bio.write_text("EU\tB-ORG\nrejects\tO\nJAPAN GET LUCKY WIN\n\nSOCCER\tO\n" + "to\tO\n" * 5)
    three_columns = tmp_path / "three.txt"
    three_columns.write_text("EU\tB-ORG\nGerman\tNNP\tB-MISC\ncall\tO\n")
    pretty = tmp_path / "pretty.json"
    pretty.write_text('{\n  "a": 1,\n  "b": [1, 2]\n}\n')
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {
        "latin": latin, "empty": empty, "bio": bio, "dir": tmp_path, "deep_json": deep_json,
        "deep_jsonl": deep_jsonl, "bad_bio": bad_bio, "three_columns": three_columns, "pretty": pretty,
        "fifo": fifo,
    }  # fmt: skip


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
    "predict --threshold 2": ([*PREDICT, "-b", "crossner_ai", "--threshold", "2"], ["threshold", "0 to 1"]),
    "evaluate --threshold -0.5": (["evaluate", "{bio}", "--threshold", "-0.5"], ["threshold", "0 to 1"]),
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
    "build-data --source-format bogus": (
        ["build-data", "{bio}", "-o", "{dir}/b.jsonl", "--source-format", "bogus"],
        ["--source-format 'bogus'", "choose one of"],
    ),
    "quickstart --lang xx": (["quickstart", "{dir}/qs", "--lang", "xx"], ["--lang 'xx'"]),
    "convert deeply nested JSON": (
        ["convert", "{deep_json}", "{dir}/o.jsonl"],
        ["deep.json", "nested too deeply"],
    ),
    "convert deeply nested JSON lines": (
        ["convert", "{deep_jsonl}", "{dir}/o.jsonl"],
        ["deep.jsonl, line 1", "nested too deeply"],
    ),
    "evaluate deeply nested JSON lines": (["evaluate", "{deep_jsonl}"], ["line 1", "nested too deeply"]),
    "train deeply nested JSON": (["train", "{deep_json}", "-o", "{dir}/run"], ["nested too deeply"]),
    "predict -i deeply nested JSON": (
        [*PREDICT, "-i", "{deep_json}", "--types", "person"],
        ["nested too deeply"],
    ),
    "predict -i a BIO file with a bad line": (
        [*PREDICT, "-i", "{bad_bio}", "--types", "person"],
        ["bad_bio.txt, line 3", "looks like a tagged file", "JAPAN GET LUCKY WIN"],
    ),
    "convert a 3-column line among 2-column lines": (
        ["convert", "{three_columns}", "{dir}/o.jsonl"],
        ["line 2", "3 columns where the other lines have 2"],
    ),
    "convert pretty-printed JSON of an unknown shape": (
        ["convert", "{pretty}", "{dir}/o.jsonl"],
        ["valid JSON", "an object with keys a, b", "id+text+mentions (rait)"],
    ),
    "predict --types not UTF-8": (
        [*PREDICT, "-i", "{bio}", "--types", "per\udcffson"],
        ["'per\\xffson' is not UTF-8 text"],
    ),
    "predict -i a file name not UTF-8": (
        [*PREDICT, "-i", "{dir}/in\udcff.txt", "--types", "person"],
        ["'", "in\\xff.txt' is not UTF-8 text"],
    ),
    "predict -o /dev/stdout": (
        [*PREDICT, "-i", "{bio}", "--types", "person", "-o", "-"],
        ["standard output"],
    ),
    "predict -i a FIFO": ([*PREDICT, "-i", "{fifo}", "--types", "person"], ["fifo", "named pipe (FIFO)"]),
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
    left = sorted(p.name for p in files["dir"].iterdir() if p.name.endswith((".lock", ".meta.json", ".tmp")))
    assert not left, left  # no lock file, settings file or temporary file left behind


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


def results_row(**fields) -> dict:
    """A results.json row: every key ``rait report`` requires, None unless given."""
    from rait.report.results import _ROW_KEYS

    return dict.fromkeys(_ROW_KEYS, None) | fields


def test_report_refuses_scores_outside_0_to_100(monkeypatch, capsys, tmp_path):
    row = results_row(benchmark="b", f1=150.0)
    (tmp_path / "results.json").write_text(json.dumps({"rows": [row], "benchmarks": ["b"]}))
    code, output = run(monkeypatch, capsys, "report", tmp_path / "results.json")
    assert_one_line_error(code, output, "rows[0].f1", "0 to 100")


def test_report_names_the_models_of_an_unknown_baseline_and_writes_nothing(monkeypatch, capsys, tmp_path):
    row = results_row(model="v", method="vanilla", mode="none", benchmark="b", f1=50.0)
    (tmp_path / "results.json").write_text(json.dumps({"rows": [row], "benchmarks": ["b"]}))
    out = tmp_path / "out"
    code, output = run(
        monkeypatch, capsys, "report", tmp_path / "results.json", "-o", out, "--baseline", "zz"
    )
    assert_one_line_error(code, output, "--baseline: no model 'zz'", "models: v")
    assert not out.exists()


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


# --------------------------------------------------------------------------------------- special outputs

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="making device files (mknod) needs root")


@ROOT
def test_convert_writes_through_a_character_device_and_keeps_it(monkeypatch, capsys, files):
    null = files["dir"] / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the /dev/null device
    code, output = run(monkeypatch, capsys, "convert", files["bio"], null)
    assert code == 0, output
    assert stat.S_ISCHR(null.stat().st_mode)  # still the device, not replaced by a regular file
    assert sorted(p.name for p in files["dir"].iterdir() if p.name.startswith(".")) == []


@ROOT
def test_a_full_device_is_one_line_naming_it(monkeypatch, capsys, files):
    full = files["dir"] / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # the /dev/full device
    code, output = run(monkeypatch, capsys, "convert", files["bio"], full)
    assert_one_line_error(code, output, f"{full}: No space left on device")
    assert stat.S_ISCHR(full.stat().st_mode)


@ROOT
def test_a_character_device_as_input_is_named_as_such(monkeypatch, capsys, files):
    zero = files["dir"] / "zero"
    os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # the /dev/zero device
    code, output = run(monkeypatch, capsys, "convert", zero, files["dir"] / "o.jsonl")
    assert_one_line_error(code, output, "zero", "is a character device, not a regular file")


def test_convert_writes_through_a_fifo_to_its_reader(monkeypatch, capsys, files):
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(files["fifo"].read_bytes()))
    reader.start()
    code, output = run(monkeypatch, capsys, "convert", files["bio"], files["fifo"])
    reader.join(30)
    assert code == 0, output
    assert json.loads(received[0])["text"] == "Ada met"
    assert stat.S_ISFIFO(files["fifo"].stat().st_mode)


def test_convert_to_standard_output_keeps_the_summary_off_it(monkeypatch, capsys, files):
    monkeypatch.setattr(sys, "argv", ["rait", "convert", str(files["bio"]), "-"])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    assert exc.value.code == 0, out
    assert json.loads(out.out)["text"] == "Ada met"
    assert "written to standard output" in out.err
    assert not (files["dir"].parent / "-").exists() and not Path("-").exists()


def test_a_symlinked_output_writes_its_target_and_stays_a_link(monkeypatch, capsys, files):
    target = files["dir"] / "real.jsonl"
    target.write_text("old\n")
    link = files["dir"] / "link.jsonl"
    link.symlink_to(target)
    code, output = run(monkeypatch, capsys, "convert", files["bio"], link)
    assert code == 0, output
    assert link.is_symlink() and json.loads(target.read_text())["text"] == "Ada met"


def test_an_unwritable_place_names_the_output_not_a_temporary_file(monkeypatch, capsys, files):
    code, output = run(monkeypatch, capsys, "convert", files["bio"], "/proc/rait-test.jsonl")
    assert_one_line_error(code, output, "/proc/rait-test.jsonl")
    assert ".tmp" not in output


def test_dev_stdout_writes_to_the_redirection_and_keeps_its_appending(files):
    target = files["dir"] / "appended.jsonl"
    target.write_text("first\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    with target.open("a") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "rait", "convert", str(files["bio"]), "/dev/stdout"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    first, row = target.read_text().splitlines()
    assert first == "first" and json.loads(row)["text"] == "Ada met"  # not truncated, nor replaced
    assert "written to standard output" in done.stderr
