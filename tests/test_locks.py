"""Output locks: re-entrant in one process, leftovers of interrupted atomic writes removed once held."""

from __future__ import annotations

from rait.locks import lock_path, output_lock


def test_file_lock_cleans_that_outputs_tmp_leftovers_only(tmp_path):
    out = tmp_path / "p.jsonl"
    mine, other = tmp_path / ".p.jsonl.abc123.tmp", tmp_path / ".q.jsonl.abc123.tmp"
    mine.write_text("half")
    other.write_text("half")
    with output_lock(out) as held:
        assert held == lock_path(out).absolute() and held.read_text().strip().isdigit()
        with output_lock(out):  # nested in the same process: allowed
            pass
    assert not mine.exists() and other.exists()


def test_directory_lock_cleans_tmp_files_below_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    leftover = run / "checkpoints" / ".trainer_state.json.x.tmp"
    leftover.write_text("half")
    with output_lock(run, directory=True):
        assert (run / ".rait.lock").is_file()
    assert not leftover.exists()
