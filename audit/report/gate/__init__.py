"""Release gating: ``--fail-on`` checks and their config file, the ``gate`` section, JUnit, ``audit compare``.

The pipeline wires ``audit run`` with::

    expressions, allow_missing = gate_checks(cli_expressions, config_path, Path.cwd(), cli_allow_missing)
    validate_expressions(expressions, groups={"methods": Group("method", "--method", names)})  # before the run
    ...  # after the run
    results["gate"] = evaluate_gate(results, expressions, allow_missing)
    write_junit(results["gate"], junit_path)      # exit 1 when not results["gate"]["passed"]
"""

from audit.report.gate.config import gate_checks
from audit.report.gate.evaluate import evaluate_gate
from audit.report.gate.expressions import validate_expressions
from audit.report.gate.junit import write_junit

__all__ = ["evaluate_gate", "gate_checks", "validate_expressions", "write_junit"]
