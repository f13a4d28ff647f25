"""``audit compare`` on the biased and unbiased sample models, through the CLI entry point."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pypdf import PdfReader

from audit.cli.main import main

ENRICHMENT = "methods.gradient.artefact.enrichment.overall"
WORSE = f"delta.{ENRICHMENT} > 0.5"


def compare(args: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(stdout: str) -> dict[str, dict]:
    return {row["key"]: row for row in json.loads(stdout)["rows"]}


def test_both_directions_flip_the_deltas(runs: dict[str, Path], results: dict[str, dict], capsys) -> None:
    code, forward, _ = compare([runs["unbiased"], runs["biased"] / "results.json", "--json"], capsys)
    assert code == 0
    code, backward, _ = compare([runs["biased"], runs["unbiased"], "--json"], capsys)
    assert code == 0
    forward_rows, backward_rows = rows(forward), rows(backward)
    assert forward_rows.keys() == backward_rows.keys()
    assert "methods.gradient.region.iou.mean" in forward_rows and "performance.auc" in forward_rows
    enrichment = {name: r["methods"]["gradient"]["artefact"]["enrichment"]["overall"] for name, r in results.items()}
    assert forward_rows[ENRICHMENT] == {
        "key": ENRICHMENT, "base": enrichment["unbiased"], "new": enrichment["biased"],
        "delta": pytest.approx(enrichment["biased"] - enrichment["unbiased"]),
    }
    assert forward_rows[ENRICHMENT]["delta"] > 0.5 and forward_rows["performance.auc"]["delta"] < 0
    for key, row in forward_rows.items():
        assert (backward_rows[key]["base"], backward_rows[key]["new"]) == (row["new"], row["base"])
        assert backward_rows[key]["delta"] == (None if row["delta"] is None else pytest.approx(-row["delta"]))
    assert json.loads(forward)["mismatches"] == []


def test_delta_gate_blocks_the_worse_model_only(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    junit = tmp_path / "junit.xml"
    code, out, _ = compare([runs["unbiased"], runs["biased"], "--fail-on", WORSE, "--junit", junit], capsys)
    assert code == 1
    assert "gate: FAIL" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    assert suite.find("testcase").get("name") == WORSE
    code, out, _ = compare([runs["biased"], runs["unbiased"], "--fail-on", WORSE, "--json"], capsys)
    assert code == 0
    gate = json.loads(out)["gate"]
    assert gate["passed"] is True and gate["checks"][0]["outcome"] == "pass" and gate["checks"][0]["value"] < -0.5


def test_plain_keys_read_new(runs: dict[str, Path], capsys) -> None:
    assert compare([runs["unbiased"], runs["biased"], "--fail-on", "performance.auc < 0.8"], capsys)[0] == 1
    assert compare([runs["biased"], runs["unbiased"], "--fail-on", "performance.auc < 0.8"], capsys)[0] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fail-on", "delta.performance.auc <"], "expected KEY OP NUMBER"),
        (["--fail-on", "delta.performance.acu < 0"], "the closest valid key is 'delta.performance.auc'"),
        (["--config", "missing.toml"], "--config missing.toml: not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(runs: dict[str, Path], capsys, extra: list, message: str) -> None:
    code, _, err = compare([runs["biased"], runs["unbiased"], *extra], capsys)
    assert code == 2
    assert err.startswith("audit: error: ") and message in err and err.count("\n") == 1


def test_missing_results_exit_2(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    code, _, err = compare([runs["biased"], tmp_path / "nothing"], capsys)
    assert code == 2 and "not found" in err


def test_methods_and_data_that_differ_are_stated_and_not_compared(
    runs: dict[str, Path], results: dict[str, dict], tmp_path: Path, capsys
) -> None:
    other = json.loads(json.dumps(results["biased"]))
    other["methods"]["occlusion"] = other["methods"].pop("gradient")
    other["data"]["root"] = "/elsewhere"
    (tmp_path / "results.json").write_text(json.dumps(other))
    code, out, err = compare([runs["unbiased"], tmp_path, "--json", "--fail-on", WORSE], capsys)
    comparison = json.loads(out)
    assert comparison["methods"] == []
    assert not any(key.startswith("methods.") for key in rows(out))
    assert "methods only in BASE: gradient (not compared)" in comparison["mismatches"]
    assert "methods only in NEW: occlusion (not compared)" in comparison["mismatches"]
    assert any(note.startswith("data.root differs: BASE ") and "NEW '/elsewhere'" in note for note in comparison["mismatches"])
    assert "differs: methods only in BASE: gradient" in err
    # a delta. check on a method missing from one run has no value: it fails, or is skipped with --allow-missing
    assert code == 1 and comparison["gate"]["checks"][0]["reason"].startswith(f"{ENRICHMENT} is not in NEW (the runs differ)")
    assert compare([runs["unbiased"], tmp_path, "--fail-on", WORSE, "--allow-missing"], capsys)[0] == 0


def test_config_file_in_the_current_directory(runs: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "audit.toml").write_text(f'fail_on = ["{WORSE}"]\n')
    monkeypatch.chdir(tmp_path)
    assert compare([runs["unbiased"], runs["biased"]], capsys)[0] == 1
    assert compare([runs["unbiased"], runs["biased"], "--fail-on", "performance.auc > 2"], capsys)[0] == 0


def test_pdf_page(runs: dict[str, Path], results: dict[str, dict], tmp_path: Path, capsys) -> None:
    pdf = tmp_path / "a&b <c>.pdf"
    code, _, _ = compare([runs["unbiased"], runs["biased"], "--fail-on", WORSE, "--pdf", pdf], capsys)
    assert code == 1
    reader = PdfReader(pdf)
    text = "".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) == 1
    enrichment = results["biased"]["methods"]["gradient"]["artefact"]["enrichment"]["overall"]
    assert f"{enrichment:.4g}" in text and ENRICHMENT in text and "Gate: FAIL" in text


def test_the_finding_is_compared_as_text_and_gated_on_new(runs: dict[str, Path], results: dict[str, dict], capsys) -> None:
    code, out, _ = compare([runs["unbiased"], runs["biased"], "--json", "--fail-on", 'finding.code == "uses_artefact"'], capsys)
    assert code == 1
    table = rows(out)
    codes = results["unbiased"]["finding"]["code"], results["biased"]["finding"]["code"]
    assert codes[1] == "uses_artefact" != codes[0]
    assert table["finding.code"] == {"key": "finding.code", "base": codes[0], "new": codes[1], "delta": None, "changed": True}
    assert table["methods.gradient.sanity.status"] == {
        "key": "methods.gradient.sanity.status", "base": "not run", "new": "not run", "delta": None, "changed": False}
    _, shown, _ = compare([runs["unbiased"], runs["biased"]], capsys)
    line = next(line for line in shown.splitlines() if "finding.code" in line)
    assert codes[0] in line and "uses_artefact" in line and "changed" in line
    assert compare([runs["biased"], runs["unbiased"], "--fail-on", 'finding.code == "uses_artefact"'], capsys)[0] == 0


def test_the_gate_is_on_page_one_above_a_long_table(tmp_path: Path) -> None:
    from audit.report.gate.compare_page import write_compare_pdf

    side = {"model": "m.onnx", "sha256": "0" * 64, "created": "2026-11-30", "results": "r.json"}
    rows = [{"key": f"methods.m{i}.artefact.enrichment.overall", "base": 1.0, "new": 1.5, "delta": 0.5} for i in range(150)]
    gate = {"passed": False, "checks": [{"expression": "delta.methods.m0.artefact.enrichment.overall > 0.2", "value": 0.5,
                                         "outcome": "fail", "reason": "0.5 > 0.2 holds"}]}
    reader = PdfReader(write_compare_pdf({"base": side, "new": side, "mismatches": [], "rows": rows}, gate, tmp_path / "c.pdf"))
    assert len(reader.pages) > 1
    first = reader.pages[0].extract_text()
    assert "Gate: FAIL" in first and "0.5 > 0.2 holds" in first
