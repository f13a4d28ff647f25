"""Hostile input to ``audit counterfactual``, ``audit train-autoencoder`` and ``audit make-synthetic``
(issue 13): every case is one ``audit: error:`` line naming the file or flag, exit 2, no traceback,
on real files on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit.cli.main import main
from audit.counterfactual.autoencoder import AutoencoderConfig, ResNetAutoencoder
from audit.counterfactual.storage import save_autoencoder
from tests.conftest import assert_one_line_error

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def cli(args: list, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def ae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) autoencoder for 1×28×28 images as audit train-autoencoder writes it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ae") / "ae.pt"
    save_autoencoder(ResNetAutoencoder(AutoencoderConfig(1, 28, 28, 4, (4, 8))), path)
    return path


def counterfactual(ae: Path | str, data: Path, out: Path, *extra) -> list:
    return ["counterfactual", SAMPLES / "biased.onnx", "--autoencoder", ae, "--data", data, "--out", out, "-q", *extra]


def _variant(ae: Path, folder: Path, name: str, weights: bytes | None, config: bytes | None) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.pt"
    path.write_bytes(ae.read_bytes() if weights is None else weights)
    if config is not None:
        path.with_suffix(".json").write_bytes(config)
    return path


def _config(ae: Path, **change) -> bytes:
    document = json.loads(ae.with_suffix(".json").read_text())
    return json.dumps({**document, **change}).encode()


def _sizes(ae: Path, value) -> bytes:
    document = json.loads(ae.with_suffix(".json").read_text())
    config = {k: (v if isinstance(v, list) else value) for k, v in document["config"].items()}
    return _config(ae, config=config)


@pytest.mark.parametrize(
    "name, weights, config, words",
    [
        ("empty", b"", "same", ["cannot read weights", "EOFError"]),
        ("empty_nojson", b"", None, ["cannot read weights"]),
        ("jsonlist", None, b"[1, 2, 3]", ["not an audit autoencoder config", "'list'"]),
        ("noconfig", None, "noconfig", ["invalid autoencoder config", "exactly channels"]),
        ("strcfg", None, "strcfg", ["invalid autoencoder config", "widths a list"]),
        ("strsizes", None, "strsizes", ["invalid autoencoder config", "integers >= 1"]),
        ("boolsizes", None, "boolsizes", ["invalid autoencoder config", "integers >= 1"]),
        ("negcfg", None, "negcfg", ["invalid autoencoder config", "integers >= 1"]),
        ("hugecfg", None, "hugecfg", ["invalid autoencoder config", "at most 1024"]),
        ("latin1", None, b"\xff\xfe{ caf\xe9 }", ["not UTF-8 JSON", "re-run audit train-autoencoder"]),
        ("deep", None, b"[" * 100_000 + b"]" * 100_000, ["unreadable autoencoder config"]),
    ],
)
def test_broken_autoencoder_files(ae, synthetic_root, tmp_path, capsys, name, weights, config, words):
    document = json.loads(ae.with_suffix(".json").read_text())
    configs = {
        "same": ae.with_suffix(".json").read_bytes(),
        "noconfig": json.dumps({k: v for k, v in document.items() if k != "config"}).encode(),
        "strcfg": _config(ae, config={k: "x" for k in document["config"]}),
        "strsizes": _sizes(ae, "x"),
        "boolsizes": _sizes(ae, True),
        "negcfg": _sizes(ae, -3),
        "hugecfg": _sizes(ae, 10**7),
    }
    path = _variant(ae, tmp_path / "ae", name, weights, configs.get(config, config))
    file = path if name.startswith("empty") else path.with_suffix(".json")
    code, output = cli(counterfactual(path, synthetic_root / "test" / "images", tmp_path / "out"), capsys)
    assert_one_line_error(code, output, str(file), *words)


def test_weights_that_are_not_a_state_dict(ae, synthetic_root, tmp_path, capsys):
    folder = tmp_path / "ae"
    folder.mkdir()
    torch.save(torch.zeros(3), folder / "tensor.pt")
    (folder / "tensor.json").write_bytes(ae.with_suffix(".json").read_bytes())
    code, output = cli(counterfactual(folder / "tensor.pt", synthetic_root / "test" / "images", tmp_path / "out"), capsys)
    assert_one_line_error(code, output, str(folder / "tensor.pt"), "weights do not match tensor.json")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--bound", "inf"], ["--bound inf", "finite", "1e+06"]),
        (["--bound", "1e308"], ["--bound 1e+308", "1e+06"]),
        (["--step", "1e-300"], ["steps per direction", "more than 1000"]),
        (["--rule", "public", "--fine-step", "1e-9"], ["steps per direction", "more than 1000"]),
        (["--floor", "nan"], ["--floor nan", "[0, 1)"]),
        (["--rise", "inf"], ["--rise inf", "(0, 1]"]),
        (["--turn-tolerance", "2"], ["--turn-tolerance 2", "[0, 1]"]),
        (["--max-pixel-change", "-1"], ["--max-pixel-change -1", ">= 0"]),
        (["--frames", "100000"], ["--frames 100000", "2 to 1000"]),
        (["--rule", "public", "--upper-frames", "100000"], ["--upper-frames 100000", "0 to 1000"]),
    ],
)
def test_counterfactual_flags_are_bounded(ae, synthetic_root, tmp_path, capsys, flags, words):
    code, output = cli(counterfactual(ae, synthetic_root / "test" / "images", tmp_path / "out", *flags), capsys)
    assert_one_line_error(code, output, *words)


def _png(path: Path, side: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((side, side), np.uint8)).save(path)


def train(data: Path, out: Path, *extra) -> list:
    return ["train-autoencoder", "--data", data, "--out", out, "--epochs", "1", "-q", *extra]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--lr", "inf"], ["--lr inf", "(0, 1]"]),
        (["--size", "100000", "100000"], ["--size 100000 100000", "89,478,485 pixels"]),
        (["--channels", "0"], ["--channels 0", "≥ 1"]),
        (["--channels", "5000"], ["--channels 5000", "1 to 1024"]),
        (["--bottleneck", "100000"], ["--bottleneck 100000", "1 to 1024"]),
        (["--epochs", "1000000"], ["--epochs 1000000", "1 to 10000"]),
        (["--size", "3", "3"], ["--size 3x3", "1x1", "side above 4"]),
    ],
)
def test_train_autoencoder_flags_are_bounded(synthetic_root, tmp_path, capsys, flags, words):
    code, output = cli(train(synthetic_root / "test" / "images", tmp_path / "ae.pt", *flags), capsys)
    assert_one_line_error(code, output, *words)
    assert not (tmp_path / "ae.pt").exists()


def test_train_autoencoder_out_paths(synthetic_root, tmp_path, capsys):
    data = synthetic_root / "test" / "images"
    code, output = cli(train(data, tmp_path / "x.json"), capsys)
    assert_one_line_error(code, output, "--out", "x.json", "same file", "x.pt")
    assert not (tmp_path / "x.json").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file / "x.pt", tmp_path / ("s" * 5000 + ".pt")):
        code, output = cli(train(data, out), capsys)
        assert_one_line_error(code, output, "--out", "cannot be written", "writable path")
    assert a_file.read_text() == "x"


def test_train_autoencoder_on_images_too_small_for_batch_norm(tmp_path, capsys):
    """A 1×1 first image (the training size) reaches the last encoder stage as one value, where
    batch normalisation cannot train (torch: 'Expected more than 1 value per channel')."""
    _png(tmp_path / "data" / "c0" / "a.png", 1)
    _png(tmp_path / "data" / "c0" / "good.png", 28)
    code, output = cli(train(tmp_path / "data", tmp_path / "ae.pt"), capsys)
    assert_one_line_error(code, output, str(tmp_path / "data"), "1x1", "batch normalisation", "--size")


def test_resume_from_a_checkpoint_of_another_shape(synthetic_root, tmp_path, capsys):
    out = tmp_path / "ae.pt"
    torch.save({"x": torch.zeros(1)}, tmp_path / "ae.resume.pt")
    code, output = cli(train(synthetic_root / "test" / "images", out, "--resume"), capsys)
    assert_one_line_error(code, output, str(tmp_path / "ae.resume.pt"), "does not match", "delete it or run without --resume")
    assert not out.exists()


@pytest.mark.parametrize(
    "counts, words",
    [
        (["--n-train", str(10**12)], ["--n-train 1000000000000", "1,000,000"]),
        (["--n-valid", str(2**70)], [f"--n-valid {2**70}", "1,000,000"]),
    ],
)
def test_make_synthetic_counts_are_bounded(tmp_path, capsys, counts, words):
    code, output = cli(["make-synthetic", tmp_path / "syn", *counts], capsys)
    assert_one_line_error(code, output, *words)
    assert not (tmp_path / "syn").exists()


def test_make_synthetic_unwritable_out(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    small = ["--n-train", "2", "--n-valid", "2", "--n-test", "2"]
    for out in (a_file / "x", Path("/proc/x"), tmp_path / ("s" * 5000)):
        code, output = cli(["make-synthetic", out, *small], capsys)
        assert_one_line_error(code, output, "cannot write the dataset", "choose a writable folder")
    assert a_file.read_text() == "x"
