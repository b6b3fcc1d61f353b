from rich.table import Table

from rait.console import LOG_WIDTH, make_console


def test_redirected_output_gets_log_width_not_80(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()
    assert console.width == LOG_WIDTH
    table = Table("directory")
    directory = "runs/cpu_en_session_with_a_long_name/eval/n2000-ra-it-dnn_bm25-k2-s42/out-domain/" + "x" * 20
    table.add_row(directory)
    console.print(table)
    assert directory in capsys.readouterr().out  # at rich's default 80 columns it is cut short with "…"


def test_columns_variable_wins(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100
    assert make_console(stderr=True).width == 100
