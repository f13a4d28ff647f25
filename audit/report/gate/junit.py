"""The gate as JUnit XML, in the layout pytest's ``--junitxml`` writes.

``testsuites > testsuite`` (tests, failures, errors, skipped, time, timestamp, hostname) with one
``testcase`` per check (classname ``audit.gate``, name the expression); a failed check has a
``failure`` child, a skipped one (``--allow-missing``) a ``skipped`` child.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

CLASSNAME = "audit.gate"


def junit_tree(gate: dict[str, Any]) -> ET.Element:
    checks = gate["checks"]
    counts = {outcome: sum(c["outcome"] == outcome for c in checks) for outcome in ("fail", "skipped")}
    suites = ET.Element("testsuites", name="audit")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=CLASSNAME,
        errors="0",
        failures=str(counts["fail"]),
        skipped=str(counts["skipped"]),
        tests=str(len(checks)),
        time="0.000",
        timestamp=dt.datetime.now().isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
    )
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=CLASSNAME, name=check["expression"], time="0.000")
        if check["outcome"] == "fail":
            ET.SubElement(case, "failure", message=check["reason"]).text = _details(check)
        elif check["outcome"] == "skipped":
            ET.SubElement(case, "skipped", type="audit.skip", message=check["reason"])
    return suites


def write_junit(gate: dict[str, Any], path: Path) -> Path:
    """Write the gate section as JUnit XML to ``path`` (atomically; parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    ET.ElementTree(junit_tree(gate)).write(temporary, encoding="utf-8", xml_declaration=True)
    os.replace(temporary, path)
    return path


def _details(check: dict[str, Any]) -> str:
    lines = [f"{check['expression']}: {check['reason']}", f"key: {check['key']}", f"value: {check['value']}"]
    lines += [f"{side}: {check[side]}" for side in ("base", "new") if side in check]
    return "\n".join(lines)
