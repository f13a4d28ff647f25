"""``--device`` / ``--precision`` parsing, the out-of-memory halving, and the device paths run
with ``--device cpu`` (CI has no GPU; tests/bench/gpu_checks.py compares CUDA with the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from audit.device import (NOTICE, Halving, check_precision, describe, in_halves, out_of_memory_as_error, parse_device,
                          precision_context, resolve)
from audit.errors import AuditError
from tests.conftest import TinyCNN, assert_one_line_error

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without a GPU")


def test_auto_cpu_and_bad_names() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "cuda:", "cpu:0", ""):
        with pytest.raises(AuditError, match="--device .*auto, cpu, cuda or cuda:N"):
            parse_device(bad)


@no_gpu
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(AuditError, match="sees no CUDA GPU.*--device cpu"):
        parse_device(text)


def test_precision_rules_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert check_precision("fp32", cpu) == "fp32" and check_precision("bf16", cpu) == "bf16"
    with pytest.raises(AuditError, match="fp16 needs a CUDA device.*bf16 or fp32"):
        check_precision("fp16", cpu)
    with pytest.raises(AuditError, match="--precision fp8: give one of fp32, bf16, fp16"):
        check_precision("fp8", cpu)
    with precision_context(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision_context(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_describe_names_the_device_and_precision() -> None:
    assert describe(torch.device("cpu"), "bf16") == {"device": "cpu", "gpu": None, "precision": "bf16"}


def test_config_file_gives_the_defaults_and_the_flags_win(tmp_path: Path) -> None:
    assert resolve(None, None, cwd=tmp_path) == (parse_device("auto"), "fp32")
    (tmp_path / "audit.toml").write_text('device = "cpu"\nprecision = "bf16"\n')
    assert resolve(None, None, cwd=tmp_path) == (torch.device("cpu"), "bf16")
    assert resolve("cpu", "fp32", cwd=tmp_path) == (torch.device("cpu"), "fp32")
    (tmp_path / "audit.toml").write_text('precision = "fp8"\n')
    with pytest.raises(AuditError, match=r"audit.toml: --precision fp8"):
        resolve("cpu", None, cwd=tmp_path)
    (tmp_path / "audit.toml").write_text("device = 0\n")
    with pytest.raises(AuditError, match=r"audit.toml: device must be text"):
        resolve(None, None, cwd=tmp_path)


# --- out of memory -------------------------------------------------------------------------


def fits(limit: int, calls: list[tuple[int, int]], error: type[Exception] = torch.OutOfMemoryError):
    """A per-batch function that runs out of 'CUDA memory' above ``limit`` images (the exception
    class exists in CPU builds) and otherwise returns 10·index for each image of its slice."""

    def fn(part: slice) -> np.ndarray:
        calls.append((part.start, part.stop))
        if part.stop - part.start > limit:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.arange(part.start, part.stop) * 10.0

    return fn


def test_out_of_memory_halves_the_batch_recursively_and_says_so_once() -> None:
    calls: list[tuple[int, int]] = []
    said: list[str] = []
    result = in_halves(fits(3, calls), 13, on_halve=Halving(said.append))
    np.testing.assert_array_equal(result, np.arange(13) * 10.0)  # every image once, in order
    # 13 → 7 + 6 → (4 + 3) + 3 + 3 → (2 + 2) + 3 + 3 + 3: the halves are ⌈n/2⌉ then ⌊n/2⌋
    assert calls == [(0, 13), (0, 7), (0, 4), (0, 2), (2, 4), (4, 7), (7, 13), (7, 10), (10, 13)]
    assert len(said) == 1 and "batch of 13 images" in said[0] and "--batch-size" in said[0]


def test_out_of_memory_on_one_image_is_a_one_line_error_naming_the_batch_size() -> None:
    with pytest.raises(AuditError, match=r"CUDA out of memory at batch size 6, and still on one image.*--batch-size 3"):
        in_halves(fits(0, []), 6, on_halve=lambda n: None)


def test_out_of_memory_outside_the_halving_is_a_one_line_error() -> None:
    with pytest.raises(AuditError, match=r"^CUDA out of memory at batch size 64; give a smaller --batch-size \(e.g. --batch-size 32\)"):
        with out_of_memory_as_error(64):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    with pytest.raises(ValueError):
        with out_of_memory_as_error(64):
            raise ValueError("not memory")
    with pytest.raises(AuditError, match="at batch size 6, and still on one image"):  # passes through unchanged
        with out_of_memory_as_error(64):
            in_halves(fits(0, []), 6, on_halve=lambda n: None)


def test_runtime_errors_that_say_out_of_memory_are_halved_and_others_pass() -> None:
    for error in (RuntimeError, Exception):  # onnxruntime's errors are plain Exceptions
        calls: list[tuple[int, int]] = []
        result = in_halves(fits(2, calls, error), 4, on_halve=lambda n: None)
        assert calls == [(0, 4), (0, 2), (2, 4)] and result.tolist() == [0, 10, 20, 30]

    def broken(part: slice) -> np.ndarray:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        in_halves(broken, 4)


def test_a_fixed_batch_step_and_tensor_results() -> None:
    calls: list[tuple[int, int]] = []

    def fn(part: slice) -> torch.Tensor:
        calls.append((part.start, part.stop))
        return torch.arange(part.start, part.stop)

    assert in_halves(fn, 5, step=2).tolist() == [0, 1, 2, 3, 4]
    assert calls == [(0, 2), (2, 4), (4, 5)]


def test_the_pipeline_halves_a_method_that_runs_out_of_memory(synthetic_root: Path, tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    """A method that fails above 3 images gives the same maps through the halving as one that
    does not fail (per_image.csv identical), and the run says so once on stderr."""
    from audit.data.dataset import open_dataset
    from audit.models.classifier import from_module
    from audit.models.spec import InputSpec
    from audit.pipeline import RunConfig, run_audit
    from audit.saliency.base import methods

    torch.manual_seed(0)
    module = TinyCNN().eval()
    valid = synthetic_root / "valid"
    tables = {}
    monkeypatch.setattr(NOTICE, "said", False)
    original = methods.get("grad-cam").attribute
    for name, limit in (("plain", 10**6), ("halved", 3)):
        def attribute(self, model, x, target, limit=limit):
            if len(x) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return original(self, model, x, target)

        methods.get("grad-cam").attribute = attribute
        try:
            dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts",
                                   regions=valid / "regions")
            run_audit(from_module(module, InputSpec(1, 28, 28), ["0", "1"]), dataset,
                      RunConfig(methods=["grad-cam"], batch_size=8, randomization_images=0, device="cpu"), tmp_path / name)
        finally:
            methods.get("grad-cam").attribute = original
        tables[name] = pd.read_csv(tmp_path / name / "per_image.csv")
    pd.testing.assert_frame_equal(tables["plain"], tables["halved"])
    err = capsys.readouterr().err
    assert err.count("CUDA out of memory on a batch of 8 images") == 1


# --- the device paths with --device cpu ----------------------------------------------------


def test_bf16_on_the_cpu_keeps_the_metrics_within_the_measured_difference(tmp_path: Path) -> None:
    """The trained 28×28 sample model on 64 synthetic images, fp32 against bf16 autocast: the
    same predictions, and enrichment within 1% (measured: 0.48% for gradient, 0.13% for
    integrated gradients, 0.004% for Grad-CAM on biased.pt2; README, "Devices and precision")."""
    from audit.data.dataset import open_dataset
    from audit.data.synthetic import make_synthetic
    from audit.models.loader import load_classifier
    from audit.pipeline import RunConfig, run_audit

    valid = make_synthetic(tmp_path / "data", seed=0, n_train=2, n_valid=64, n_test=2) / "valid"
    results, tables = {}, {}
    for precision in ("fp32", "bf16"):
        dataset = open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts",
                               regions=valid / "regions")
        config = RunConfig(methods=["gradient", "grad-cam", "integrated-gradients"], batch_size=32, device="cpu",
                           method_options={"integrated-gradients": {"n_steps": 16}}, randomization_images=0,
                           precision=precision)
        results[precision] = run_audit(load_classifier(SAMPLES / "biased.pt2"), dataset, config, tmp_path / precision)
        tables[precision] = pd.read_csv(tmp_path / precision / "per_image.csv")
    assert (tables["fp32"]["prediction"] == tables["bf16"]["prediction"]).all()
    for method in ("gradient", "grad-cam", "integrated-gradients"):
        full, reduced = (results[p]["methods"][method]["artefact"]["enrichment"]["overall"] for p in ("fp32", "bf16"))
        assert reduced == pytest.approx(full, rel=0.01), method
    assert not (np.asarray(tables["fp32"].filter(like="gradient.")) == np.asarray(tables["bf16"].filter(like="gradient."))).all()


def test_fp16_on_the_cpu_is_refused_before_any_image(synthetic_root: Path, tmp_path: Path) -> None:
    from audit.data.dataset import open_dataset
    from audit.models.classifier import from_module
    from audit.models.spec import InputSpec
    from audit.pipeline import RunConfig, run_audit

    dataset = open_dataset(synthetic_root / "valid" / "images", size=(28, 28), channels=1)
    with pytest.raises(AuditError, match="fp16 needs a CUDA device"):
        run_audit(from_module(TinyCNN().eval(), InputSpec(1, 28, 28), ["0", "1"]), dataset,
                  RunConfig(methods=["gradient"], precision="fp16", device="cpu"), tmp_path / "out")
    assert not (tmp_path / "out" / "per_image.csv").exists()


def test_onnx_forward_through_io_binding_equals_session_run(tiny_model_files) -> None:
    import onnxruntime

    from audit.models.loader import ModelOptions, load_classifier

    classifier = load_classifier(tiny_model_files["onnx"], ModelOptions(device=torch.device("cpu")))
    assert classifier.provider == "CPUExecutionProvider" and classifier.device == torch.device("cpu")
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(tiny_model_files["onnx"]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x.numpy()})[0]
    got = classifier.logits(x)
    assert got.dtype == torch.float32 and got.device == torch.device("cpu")
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(classifier.logits(x[:1]).numpy(), expected[:1])  # another batch size


@pytest.mark.parametrize("command", ["counterfactual", "finetune", "train-autoencoder"])
def test_device_and_precision_flags_are_checked_by_every_command(command: str, tmp_path: Path, capsys) -> None:
    from audit.cli.main import main

    args = {"counterfactual": [SAMPLES / "biased.onnx", "--autoencoder", SAMPLES / "autoencoder.pt", "--data", tmp_path,
                               "--out", tmp_path / "o"],
            "finetune": [SAMPLES / "biased.onnx", "--data", tmp_path, "--valid", tmp_path, "--regions", tmp_path,
                         "--loss", "actdiff", "--out", tmp_path / "o"],
            "train-autoencoder": ["--data", tmp_path, "--out", tmp_path / "ae.pt"]}[command]
    code = main([command, *map(str, args), "--device", "tpu"])
    assert_one_line_error(code, capsys.readouterr().err, "--device tpu", "auto, cpu, cuda or cuda:N")
    code = main([command, *map(str, args), "--device", "cpu", "--precision", "fp16"])
    assert_one_line_error(code, capsys.readouterr().err, "--precision fp16 needs a CUDA device")


def test_train_autoencoder_with_device_cpu_and_bf16_records_nothing_else(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    """--device cpu --precision bf16 trains (loss finite) and writes the usual files."""
    from audit.cli.main import main

    code = main(["train-autoencoder", "--data", str(synthetic_root / "train" / "images"), "--out", str(tmp_path / "ae.pt"),
                 "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--precision", "bf16", "-q"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "ae.pt").is_file()
    record = json.loads((tmp_path / "ae.json").read_text())
    assert np.isfinite(record["training"]["val_loss"])


def test_counterfactual_with_device_cpu_records_the_device_beside_the_outputs(synthetic_root: Path, tmp_path: Path,
                                                                              capsys) -> None:
    from audit.cli.main import main

    code = main(["counterfactual", str(SAMPLES / "biased.onnx"), "--autoencoder", str(SAMPLES / "autoencoder.pt"),
                 "--data", str(synthetic_root / "test" / "images"), "--out", str(tmp_path / "cf"), "--device", "cpu",
                 "--frames", "3", "--upper-frames", "0", "--bound", "20"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "device: cpu, precision fp32" in err
    run = json.loads((tmp_path / "cf" / "summary.json").read_text())["run"]
    assert run["device"] == "cpu" and run["gpu"] is None and run["precision"] == "fp32"
    assert "counterfactuals.csv" in run["outputs"]


def test_normalising_on_the_device_is_the_host_normalisation() -> None:
    """A GPU input is normalised where it lands (``InputSpec.normalise``): the same numbers as
    the host path, (x·(hi − lo) + lo − mean)/std in NCHW, here checked on the CPU."""
    from audit.models.spec import InputSpec

    images = np.random.default_rng(0).random((3, 5, 7, 3), dtype=np.float32)
    spec = InputSpec(3, 5, 7, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_range=(0.0, 255.0))
    by_hand = (images * 255.0 - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    on_device = spec.normalise(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(on_device, by_hand.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(on_device, spec.to_tensor(images).numpy())


def test_the_precision_is_read_in_any_case_like_the_device(tmp_path) -> None:
    """--device CUDA was taken and --precision FP32 refused."""
    assert resolve("CPU", " FP32 ", cwd=tmp_path) == (torch.device("cpu"), "fp32")
    assert resolve("cpu", "Bf16", cwd=tmp_path)[1] == "bf16"
    (tmp_path / "audit.toml").write_text('precision = "BF16"\n')
    assert resolve("cpu", None, cwd=tmp_path)[1] == "bf16"
