"""JUnit XML: valid, counts that match, and the element layout of pytest's own --junitxml."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from audit.report.gate import evaluate_gate, write_junit

RESULTS = {"performance": {"auc": 0.7, "accuracy": 0.9}, "subset": {"auc": None, "reason": "no labelled images"}}
EXPRESSIONS = ["performance.auc < 0.8", "performance.accuracy < 0.8", "subset.auc < 0.8", "performance.auc > 0.5 "]


def test_junit_counts_and_cases(tmp_path: Path) -> None:
    gate = evaluate_gate(RESULTS, EXPRESSIONS, allow_missing=True)
    path = write_junit(gate, tmp_path / "deep" / "junit.xml")
    root = ET.parse(path).getroot()
    (suite,) = root.findall("testsuite")
    assert (root.tag, suite.get("name")) == ("testsuites", "audit.gate")
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4", "failures": "2", "errors": "0", "skipped": "1"
    }
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [e.strip() for e in EXPRESSIONS]
    assert {c.get("classname") for c in cases} == {"audit.gate"}
    assert [[child.tag for child in c] for c in cases] == [["failure"], [], ["skipped"], ["failure"]]
    assert cases[0].find("failure").get("message") == "0.7 < 0.8 holds"
    assert "value: 0.7" in cases[0].find("failure").text
    assert cases[2].find("skipped").get("message").startswith("subset.auc has no value in results.json: no labelled images")
    assert not (tmp_path / "deep" / "junit.xml.tmp").exists()


def test_markup_in_names_is_escaped(tmp_path: Path) -> None:
    expression = """a&b.c"d'e >= 1"""
    gate = evaluate_gate({"a&b": {"""c"d'e""": 1.0}}, [expression], allow_missing=False)
    case = ET.parse(write_junit(gate, tmp_path / "j.xml")).getroot().find("testsuite/testcase")
    assert case.get("name") == expression and case.find("failure").text.startswith(expression)


def test_same_layout_as_pytest_junitxml(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_pass():\n    pass\n\ndef test_fail():\n    assert 0\n\n"
        "def test_skip():\n    pytest.skip('no value')\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--junitxml", "pytest.xml", "test_sample.py"],
        cwd=tmp_path, capture_output=True, check=False,
    )
    reference = ET.parse(tmp_path / "pytest.xml").getroot()
    gate = evaluate_gate(RESULTS, ["performance.auc > 0.8", "performance.auc < 0.8", "subset.auc < 0.8"], allow_missing=True)
    ours = ET.parse(write_junit(gate, tmp_path / "audit.xml")).getroot()

    def layout(root: ET.Element) -> list:
        suite = root.find("testsuite")
        cases = {tuple(child.tag for child in case): case for case in suite.findall("testcase")}
        return [
            root.tag, sorted(suite.attrib), [case.tag for case in suite],
            {tags: (sorted(case.attrib), [sorted(child.attrib) for child in case]) for tags, case in cases.items()},
        ]

    assert layout(ours) == layout(reference)
    assert ours.find("testsuite").get("failures") == reference.find("testsuite").get("failures") == "1"
