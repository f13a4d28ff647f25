"""Every supported operator against ONNX's own backend node test cases.

The onnx wheel ships no test data, so ``collect_testcases()`` regenerates the cases (models +
inputs + expected outputs from the reference implementation). A case runs if the operator it
tests is in ``SUPPORTED_OPS`` (for ``*_expanded`` function-body variants: if every op in the
body is too). Cases needing something the twin deliberately lacks are skipped through the
narrow patterns in ``SKIPS``; ``test_skip_patterns_are_needed`` fails when a pattern matches no
case or a skipped case would in fact pass, and the skip count is bounded.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from audit.models.onnx_graph import SUPPORTED_OPS, UnsupportedOperatorError, build_torch_twin

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.node import collect_testcases

    ALL_CASES = collect_testcases()

SKIPS: dict[str, str] = {
    r"(U?INT4|U?INT2|FLOAT4E2M1|FLOAT8E\w+)": "4-bit, 2-bit and float8 dtypes have no torch equivalent",
    r"^test_equal_string": "string tensors",
    r"^test_if_opt$|^test_loop16_seq_none$": "Optional values",
    r"^test_(add|sub|div|mod|max|min|greater|greater_equal|less|less_equal)_uint(16|32|64)(_expanded)?$":
        "torch CPU has no arithmetic/comparison kernels for uint16/32/64",
    r"^test_training_dropout": "training-mode Dropout is random",
    r"^test_maxpool_with_argmax": "MaxPool Indices output",
    r"^test_averagepool_\w*dilations": "AveragePool dilations (torch avg_pool has none)",
    r"^test_resize_\w*antialias$": "Resize antialias=1",
    r"^test_resize_tf_crop_and_resize": "Resize tf_crop_and_resize",
}
MAX_SKIPS = 250


def _op_under_test() -> dict[str, str]:
    ops = {c.name: c.model.graph.node[0].op_type for c in ALL_CASES if len(c.model.graph.node) == 1}
    out = {}
    for c in ALL_CASES:
        base = re.sub(r"_expanded(_ver\d+)?$", "", c.name)
        if base in ops:
            out[c.name] = ops[base]
    return out


def _ops(case: object) -> set[str]:
    return {n.op_type for n in case.model.graph.node}


OP_OF = _op_under_test()
# Cases of supported operators, and function bodies made only of supported operators (e.g.
# SequenceMap expanded into Loop and the Sequence operators).
CASES = [c for c in ALL_CASES if OP_OF.get(c.name) in SUPPORTED_OPS
         or (c.name in OP_OF and "_expanded" in c.name and _ops(c) <= SUPPORTED_OPS)]


def skip_reason(name: str) -> str | None:
    for pattern, reason in SKIPS.items():
        if re.search(pattern, name):
            return reason
    return None


def _to_torch(value: object) -> torch.Tensor:
    array = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(array))


def _expected(value: object) -> np.ndarray:
    array = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


def run_case(case: object) -> None:
    twin = build_torch_twin(case.model)
    for inputs, outputs in case.data_sets:
        with torch.no_grad():
            got = twin(*[[_to_torch(v) for v in a] if isinstance(a, list) else _to_torch(a) for a in inputs])
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(outputs)
        for actual, want in zip(got, outputs):
            if isinstance(want, list):  # a sequence output
                assert isinstance(actual, list) and len(actual) == len(want)
                for a, w in zip(actual, want):
                    _compare(a, w, case.name)
            else:
                _compare(actual, want, case.name)


def _compare(actual: torch.Tensor, want: object, name: str) -> None:
    want = _expected(want)
    actual = (actual.float() if actual.dtype == torch.bfloat16 else actual).numpy()
    assert actual.shape == want.shape
    assert actual.dtype == want.dtype
    if want.dtype == bool or want.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, want)
    else:
        tol = 1e-2 if want.dtype in (np.float16,) or "bfloat16" in name or "bf16" in name else 1e-4
        np.testing.assert_allclose(actual, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_backend_case(case: object) -> None:
    ops = _ops(case)
    if not ops <= SUPPORTED_OPS:
        pytest.skip(f"function body uses unsupported {sorted(ops - SUPPORTED_OPS)}")
    reason = skip_reason(case.name)
    if reason:
        pytest.skip(reason)
    run_case(case)


def test_every_supported_op_has_cases() -> None:
    """Ops without backend cases are listed here explicitly (covered by the model tests, the
    Sequence operators by tests/models/test_twin_operators.py against onnxruntime)."""
    tested = {OP_OF[c.name] for c in CASES} | {op for c in CASES if "_expanded" in c.name for op in _ops(c)}
    assert SUPPORTED_OPS - tested <= {"Upsample", "SequenceAt", "ConcatFromSequence", "SequenceErase", "SequenceConstruct"}


def test_skip_patterns_are_needed() -> None:
    skipped = [c for c in CASES if skip_reason(c.name)]
    assert len(skipped) <= MAX_SKIPS
    for pattern in SKIPS:
        matching = [c for c in CASES if re.search(pattern, c.name)]
        assert matching, f"skip pattern {pattern!r} matches no case"
    for case in skipped:
        with pytest.raises((UnsupportedOperatorError, AssertionError, TypeError, NotImplementedError, RuntimeError)):
            run_case(case)
