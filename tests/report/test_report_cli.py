"""``audit report``: renders a saved run; bad input is exit code 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

from audit.cli.main import main
from tests.report.conftest import Report, read_pages


def test_report_command_writes_the_pdf(report: Report, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "again.pdf"
    assert main(["report", str(report.run_dir / "results.json"), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF-")
    assert f"report: {out}" in capsys.readouterr().out
    assert report.results["model"]["sha256"][:12] in read_pages(out)[0]


def test_missing_results_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere" / "results.json"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "not found" in err


def test_results_file_without_sections_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": "audit.results/1", "model": {}}))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing data, performance, methods" in err
    assert not (tmp_path / "report.pdf").exists()


def test_short_o_means_option_only(report, tmp_path, capsys) -> None:
    """`-o` is `--option` (run); `audit report` takes `--out` only, so `-o` there is a usage error."""
    assert main(["report", str(report.run_dir / "results.json"), "-o", str(tmp_path / "x.pdf")]) == 2
    assert "-o: no such option" in capsys.readouterr().err
    assert not (tmp_path / "x.pdf").exists()
