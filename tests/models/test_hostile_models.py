"""Hostile model files (issue 13): payloads that would create a marker file, external data that
escapes or is missing, inputs too large to allocate, corrupt archives and misleading messages.

Every payload test asserts that the marker file does not exist; every bad-input test asserts
exit code 2, one line on stderr starting with ``audit: error:``, and no traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from audit.cli.main import main
from audit.errors import AuditError
from audit.models.export_json import unsafe_guard, unsafe_sympy
from audit.models.loader import ModelOptions, load_classifier
from tests.conftest import TinyCNN, assert_one_line_error


class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip archive member by member; ``change(name, data)`` returns new data or None."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            new = change(info.filename, data)
            zout.writestr(info.filename, data if new is None else new)
    return target


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("archives")
    module = TinyCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(root / "clean.pt2"))
        torch.jit.script(module).save(str(root / "clean.pt"))
    return {"clean.pt2": root / "clean.pt2", "clean.pt": root / "clean.pt", "root": root}


def audit_cli(args: list, capsys) -> tuple[int, str]:
    code = main(["run", *[str(a) for a in args], "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err



def run_args(model: Path, data: Path, *extra) -> list:
    return [model, "--data", data, "--out", data.parent / "out", *extra]


# --- .pt2: pickled members -------------------------------------------------------------------


def _sample_inputs_payload(marker: Path):
    def change(name: str, data: bytes) -> bytes | None:
        return pickled(((Payload(marker),), {})) if name.endswith("data/sample_inputs/model.pt") else None

    return change


def _pickled_weight_payload(clean: Path, marker: Path):
    """The ``use_pickle`` variant: the weights config marks one weight as pickled."""
    with zipfile.ZipFile(clean) as z:
        config_name = next(n for n in z.namelist() if n.endswith("data/weights/model_weights_config.json"))
        weight = json.loads(z.read(config_name))["config"]["head.bias"]["path_name"]

    def change(name: str, data: bytes) -> bytes | None:
        if name == config_name:
            config = json.loads(data)
            config["config"]["head.bias"]["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/" + weight):
            return pickled(Payload(marker))
        return None

    return change, f"data/weights/{weight}"


def _pickled_constant_payload(marker: Path):
    """A pickled tensor constant (``use_pickle``) added to the constants config."""

    def change(name: str, data: bytes) -> bytes | None:
        if name.endswith("data/constants/model_constants_config.json"):
            config = json.loads(data)
            config["config"]["c"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
            return json.dumps(config).encode()
        return None

    return change


def _add_member(source: Path, target: Path, member: str, data: bytes) -> Path:
    rewrite(source, target, lambda name, d: None)
    with zipfile.ZipFile(source) as z:
        prefix = z.namelist()[0].split("/")[0]
    with zipfile.ZipFile(target, "a") as z:
        z.writestr(f"{prefix}/{member}", data)
    return target


@pytest.mark.parametrize("variant", ["sample_inputs", "use_pickle weight", "use_pickle constant", "opaque object", "legacy layout",
                                     "second program not named .json"])
def test_pt2_payloads_never_run(archives, tmp_path, synthetic_root, capsys, variant) -> None:
    marker = tmp_path / "marker"
    clean = archives["clean.pt2"]
    hostile = tmp_path / "hostile.pt2"
    if variant == "sample_inputs":
        rewrite(clean, hostile, _sample_inputs_payload(marker))
        member = "data/sample_inputs/model.pt"
    elif variant == "use_pickle weight":
        change, member = _pickled_weight_payload(clean, marker)
        rewrite(clean, hostile, change)
    elif variant == "use_pickle constant":
        staged = rewrite(clean, tmp_path / "staged.pt2", _pickled_constant_payload(marker))
        _add_member(staged, hostile, "data/constants/tensor_0", pickled(Payload(marker)))
        member = "data/constants/tensor_0"
    elif variant == "opaque object":
        _add_member(clean, hostile, "data/constants/opaque_obj_0", pickle.dumps(Payload(marker)))
        member = "data/constants/opaque_obj_0"
    elif variant == "legacy layout":
        rewrite(clean, hostile, lambda name, d: None)
        with zipfile.ZipFile(hostile, "a") as z:
            z.writestr("serialized_example_inputs.pt", pickled(Payload(marker)))
        member = "serialized_example_inputs.pt"
    else:  # torch.export.load reads every member under models/ as a program, named by cutting 5 characters
        with zipfile.ZipFile(clean) as z:
            prefix = z.namelist()[0].split("/")[0]
            program = z.read(f"{prefix}/models/model.json")
            weights = z.read(f"{prefix}/data/weights/model_weights_config.json")
            constants = z.read(f"{prefix}/data/constants/model_constants_config.json")
        staged = clean
        for number, (member_name, data) in enumerate([
            ("models/pwned12345", program), ("data/weights/pwned_weights_config.json", weights),
            ("data/constants/pwned_constants_config.json", constants),
        ]):
            staged = _add_member(staged, tmp_path / f"staged{number}.pt2", member_name, data)
        _add_member(staged, hostile, "data/sample_inputs/pwned.pt", pickle.dumps(Payload(marker)))
        member = "models/pwned12345"
    code, output = audit_cli(run_args(hostile, synthetic_root / "valid" / "images"), capsys)
    assert_one_line_error(code, output, str(hostile), member)
    assert not marker.exists()
    # the same payload really does run when torch loads the archive without our check
    if variant in ("sample_inputs", "use_pickle weight", "second program not named .json"):
        try:
            torch.export.load(str(hostile))
        except Exception:
            pass
        assert marker.exists()


def _replace_json(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    def change(name: str, data: bytes) -> bytes | None:
        if name.endswith("models/model.json"):
            program = json.loads(data)
            edit(program)
            return json.dumps(program).encode()
        return None

    return rewrite(source, target, change)


def test_pt2_text_that_torch_would_evaluate_never_runs(archives, tmp_path, synthetic_root, capsys) -> None:
    """``expr_str`` goes through sympy.sympify (eval), ``guards_code`` through exec."""
    marker = tmp_path / "marker"
    escape = f"(Symbol.__new__.__globals__['__builtins__']['__import__']('os').system('touch {marker}'), s77)[1]"

    def sympy_payload(program: dict) -> None:
        text = json.dumps(program)
        program.clear()
        program.update(json.loads(text.replace('"Symbol(\'s77\', positive=True, integer=True)"', json.dumps(escape), 1)))

    def guard_payload(program: dict) -> None:
        program["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]

    for name, edit in (("sympy.pt2", sympy_payload), ("guard.pt2", guard_payload)):
        hostile = _replace_json(archives["clean.pt2"], tmp_path / name, edit)
        code, output = audit_cli(run_args(hostile, synthetic_root / "valid" / "images"), capsys)
        assert_one_line_error(code, output, str(hostile), "models/model.json")
        assert not marker.exists()


def test_clean_pt2_loads_and_audits(archives, synthetic_root, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    module = TinyCNN().eval()
    classifier = load_classifier(archives["clean.pt2"])
    x = torch.rand(3, 1, 28, 28)
    np.testing.assert_allclose(classifier.logits(x).numpy(), module(x).detach().numpy(), atol=1e-5)
    assert classifier.sha256 == hashlib.sha256(archives["clean.pt2"].read_bytes()).hexdigest()
    valid = synthetic_root / "valid"
    out = tmp_path / "out"
    code = main(["run", str(archives["clean.pt2"]), "--data", str(valid / "images"), "--masks", str(valid / "artefacts"),
                 "--out", str(out), "--method", "gradient", "--randomization-images", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    model = json.loads((out / "results.json").read_text())["model"]
    assert model["format"] == "torch.export" and model["files"][0]["sha256"] == model["sha256"]


@pytest.mark.parametrize("text", ["Pow(9, Pow(9, 9))", "9**9**9", "LShift(1, 10**9)", "Pow(Pow(Pow(Pow(Pow(10, 64), 64), 64), 64), 64)",
                                  "Integer(" + "9" * 40 + ")", "Integer('" + "9" * 40 + "')"])
def test_size_expressions_that_would_hang_sympy_are_refused(text: str) -> None:
    from audit.models.export_json import unsafe_sympy

    assert unsafe_sympy(text) is not None  # sympy.sympify of any of these runs for minutes or exhausts memory


def test_legitimate_guards_and_sizes_pass_the_grammar() -> None:
    """Text torch 2.13 writes for a program with dynamic batch, height and width."""
    for text in ["Symbol('s77', positive=True, integer=True)",
                 "Mul(Integer(2), Symbol('s0', positive=True, integer=True), Max(Integer(1), FloorDiv(Symbol('s0', positive=True, integer=True), Integer(2))))",
                 "Float('1.5', precision=53)", "s0*s1 + 2"]:
        assert unsafe_sympy(text) is None, text
    for text in ["((L['x'].size()[3] // 2)*(L['x'].size()[2] // 2)) != (L['x'].size()[2] // 2)",
                 "((L['x'].size()[2] // 2) % ((L['x'].size()[3] // 2)*(L['x'].size()[2] // 2))) != 0"]:
        assert unsafe_guard(text) is None, text
    for text in ["Symbol.__new__", "sympify('1')", "Symbol('__class__')", "(lambda: 1)()", "[s0 for s0 in s1]"]:
        assert unsafe_sympy(text), text
    for text in ["L['x'].__class__", "torch.save(1, 'f')", "L[x]", "getattr(L, 'size')"]:
        assert unsafe_guard(text), text


# --- TorchScript -----------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["data.pkl", "constants.pkl"])
def test_torchscript_pickles_never_run(archives, tmp_path, synthetic_root, capsys, member) -> None:
    marker = tmp_path / "marker"
    hostile = rewrite(archives["clean.pt"], tmp_path / "hostile.pt",
                      lambda name, d: pickle.dumps(Payload(marker), protocol=2) if name.endswith("/" + member) else None)
    code, output = audit_cli(run_args(hostile, synthetic_root / "valid" / "images", "--input-size", 28, 28, "--channels", 1), capsys)
    assert_one_line_error(code, output, str(hostile), "TorchScript")
    assert not marker.exists()


# --- corrupt archives ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped graph", "bit-flipped weight", "corrupt graph member", "wrong zip"])
@pytest.mark.parametrize("name", ["clean.pt2", "clean.pt"])
def test_corrupt_archives_are_one_line_exit_2(archives, tmp_path, synthetic_root, capsys, damage, name) -> None:
    source = archives[name]
    hostile = tmp_path / ("bad" + source.suffix)
    data = bytearray(source.read_bytes())
    if damage == "truncated":
        hostile.write_bytes(bytes(data[: len(data) * 2 // 3]))
    elif damage == "wrong zip":
        with zipfile.ZipFile(hostile, "w") as z:
            z.writestr("archive/archive_format", "pt2")
            z.writestr("archive/code/x.py", "def f(): pass")
    elif damage == "corrupt graph member":  # a valid zip (fresh CRCs) whose program is damaged
        graph = "models/model.json" if name.endswith("pt2") else "/data.pkl"
        rewrite(source, hostile, lambda member, d: d[: len(d) // 2] + bytes(64) if member.endswith(graph) else None)
    else:  # flipped bytes in place: the member's CRC no longer matches
        target = {"bit-flipped graph": ".json" if name.endswith("pt2") else "data.pkl",
                  "bit-flipped weight": "weight_0" if name.endswith("pt2") else "data/0"}[damage]
        with zipfile.ZipFile(source) as z:
            info = next(i for i in z.infolist() if i.filename.endswith(target))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        for k in range(start, start + min(info.file_size, 64), 7):
            data[k] ^= 0xFF
        hostile.write_bytes(bytes(data))
    extra = ["--input-size", 28, 28, "--channels", 1] if name.endswith(".pt") else []
    code, output = audit_cli(run_args(hostile, synthetic_root / "valid" / "images", *extra), capsys)
    assert_one_line_error(code, output, str(hostile))


def test_hostile_pt2_as_a_real_subprocess(archives, tmp_path, synthetic_root) -> None:
    marker = tmp_path / "marker"
    hostile = rewrite(archives["clean.pt2"], tmp_path / "hostile.pt2", _sample_inputs_payload(marker))
    audit = Path(sys.executable).with_name("audit")
    result = subprocess.run([audit, "run", hostile, "--data", synthetic_root / "valid" / "images", "--out", tmp_path / "out", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "data/sample_inputs/model.pt" in result.stderr
    assert not marker.exists()


# --- ONNX external data ----------------------------------------------------------------------


@pytest.fixture()
def external(tmp_path) -> Path:
    """A TinyCNN exported to ONNX with its weights in ``model.onnx.data`` beside it."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyCNN().eval(), (torch.rand(2, 1, 28, 28),), buffer, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(onnx.load_from_string(buffer.getvalue()), str(folder / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx"


def test_sha256_covers_onnx_external_data(external) -> None:
    before = load_classifier(external)
    data = external.with_name("model.onnx.data")
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (external, data)]
    listing = f"{digests[0]}  model.onnx\n{digests[1]}  model.onnx.data\n"
    assert before.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    assert before.files == [{"path": str(external), "sha256": digests[0], "bytes": external.stat().st_size},
                            {"path": str(data), "sha256": digests[1], "bytes": data.stat().st_size}]
    # scale every float32 weight stored in the data file by 1.5 (the model file stays the same)
    proto = onnx.load(str(external), load_external_data=False)
    raw = bytearray(data.read_bytes())
    for tensor in proto.graph.initializer:
        info = {e.key: e.value for e in tensor.external_data}
        if tensor.data_type == onnx.TensorProto.FLOAT:
            start, length = int(info.get("offset", 0)), int(info["length"])
            values = np.frombuffer(bytes(raw[start:start + length]), dtype=np.float32) * 1.5
            raw[start:start + length] = values.astype(np.float32).tobytes()
    data.write_bytes(bytes(raw))
    after = load_classifier(external)
    x = torch.rand(2, 1, 28, 28)
    assert float((after.logits(x) - before.logits(x)).abs().max()) > 1e-3
    assert after.files[0]["sha256"] == digests[0]
    new_data = hashlib.sha256(data.read_bytes()).hexdigest()
    assert after.files[1]["sha256"] == new_data != digests[1]
    expected = hashlib.sha256(f"{digests[0]}  model.onnx\n{new_data}  model.onnx.data\n".encode()).hexdigest()
    assert after.sha256 == expected != before.sha256


def _point_external_data(model: Path, location: str) -> None:
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    model.write_bytes(proto.SerializeToString())


@pytest.mark.parametrize("case, words", [
    ("outside", ["outside the model's folder"]),
    ("absolute", ["absolute path"]),
    ("symlink", ["symbolic link"]),
    ("missing", ["does not exist"]),
])
def test_onnx_external_data_that_escapes_or_is_missing(external, tmp_path, synthetic_root, capsys, case, words) -> None:
    data = external.with_name("model.onnx.data")
    if case == "outside":
        data.rename(tmp_path / "model.onnx.data")
        _point_external_data(external, "../model.onnx.data")
    elif case == "absolute":
        _point_external_data(external, str(data))
    elif case == "symlink":
        data.rename(tmp_path / "elsewhere.data")
        data.symlink_to(tmp_path / "elsewhere.data")
    else:
        data.unlink()
    code, output = audit_cli(run_args(external, synthetic_root / "valid" / "images"), capsys)
    assert_one_line_error(code, output, str(external), *words)


# --- sizes and messages ----------------------------------------------------------------------


def _onnx_declaring(path: Path, height: int, width: int) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0)], "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, height, width])],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n", 1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_inputs_too_large_to_allocate_are_refused_before_allocating(archives, tmp_path, synthetic_root, capsys) -> None:
    images = synthetic_root / "valid" / "images"
    huge = _onnx_declaring(tmp_path / "huge.onnx", 60000, 60000)
    code, output = audit_cli(run_args(huge, images), capsys)
    assert_one_line_error(code, output, str(huge), "60000x60000", "limit")
    code, output = audit_cli(run_args(archives["clean.pt"], images, "--input-size", 100000, 100000, "--channels", 1), capsys)
    assert_one_line_error(code, output, "--input-size", "100000x100000")


class NanNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).repeat(1, 2) * float("nan")


def test_nan_output_names_the_file_and_the_fix(tmp_path) -> None:
    from audit.models.loader import _verified_twin
    from audit.models.spec import InputSpec

    path = tmp_path / "nan.onnx"
    spec = InputSpec(1, 8, 8)
    module = NanNet()
    with pytest.raises(AuditError) as caught:
        _verified_twin(path, lambda: module, module, spec)
    message = str(caught.value)
    assert str(path) in message and "NaN or infinite" in message and "--mean" in message
    assert "report this model" not in message and "differs by nan" not in message


def test_unsupported_operators_name_the_path(tmp_path) -> None:
    from onnx import TensorProto, helper

    path = tmp_path / "hard.onnx"
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"])], "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    classifier = load_classifier(path, ModelOptions())
    with pytest.raises(AuditError) as caught:
        classifier.differentiable
    message = str(caught.value)
    assert message.startswith(f"{path}: format onnx: ") and "Det" in message and "ONNX model" not in message


def test_an_unsupported_operator_on_the_runtime_path_is_one_line_naming_op_node_and_format(tmp_path, capsys,
                                                                                        synthetic_root) -> None:
    """Det of each image's 28×28 channel: no twin converter, not constant, so not folded away."""
    from onnx import TensorProto, helper

    from audit.cli.main import main
    from tests.conftest import assert_one_line_error

    path = tmp_path / "det.onnx"
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["d"], name="determinant"),
         helper.make_node("Concat", ["d", "d"], ["y"], axis=1, name="concat")], "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    code = main(["run", str(path), "--data", str(synthetic_root / "valid" / "images"), "--out", str(tmp_path / "o"),
                 "-m", "gradient", "--quiet"])
    assert_one_line_error(code, capsys.readouterr().err, f"{path}: format onnx", "Det (domain 'ai.onnx', opset 17)",
                          "node 'determinant'", "--method occlusion")
