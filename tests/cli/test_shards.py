"""Sharded runs through the CLI on a committed sample model: ``audit run --shard I/N`` parts,
``audit merge`` of them equal to one unsharded run, and every merge of parts that are not one
run covered exactly once refused in one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from audit.cli.main import main
from audit.counterfactual.strips import STRIPS
from tests.conftest import assert_one_line_error

MODELS = Path(__file__).resolve().parents[2] / "sample_models"
#: Keys that name the run rather than its results, and timings.
RUN_KEYS = {"created", "command", "run", "seconds_per_layer_per_image"}


def audit(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_args(valid: Path, model: Path = MODELS / "biased.onnx", *extra) -> list:
    return ["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--regions", valid / "regions",
            "--method", "gradient", "--method", "occlusion", "--randomization-images", "4", "--batch-size", "5", "--quiet", *extra]


def assert_same_numbers(merged: Any, whole: Any, where: str = "") -> None:
    """Equal structure, equal non-numbers, numbers within 1e-9 relative (the issue's bound)."""
    if isinstance(whole, dict):
        assert isinstance(merged, dict) and set(merged) - RUN_KEYS == set(whole) - RUN_KEYS, where
        for key in set(whole) - RUN_KEYS:
            assert_same_numbers(merged[key], whole[key], f"{where}.{key}")
    elif isinstance(whole, list):
        assert isinstance(merged, list) and len(merged) == len(whole), where
        for i, (a, b) in enumerate(zip(merged, whole)):
            assert_same_numbers(a, b, f"{where}[{i}]")
    elif isinstance(whole, float) and not isinstance(merged, bool):
        assert isinstance(merged, (int, float)) and math.isclose(merged, whole, rel_tol=1e-9, abs_tol=1e-12), (where, merged, whole)
    else:
        assert merged == whole, (where, merged, whole)


def assert_same_run(merged: Path, whole: Path) -> None:
    """``merged`` holds the outputs of the run in ``whole``: per_image.csv byte for byte,
    results.json within 1e-9 relative, the same example maps."""
    assert (merged / "per_image.csv").read_text() == (whole / "per_image.csv").read_text()
    assert_same_numbers(json.loads((merged / "results.json").read_text()), json.loads((whole / "results.json").read_text()))
    maps = sorted(p.name for p in (whole / "maps").iterdir())
    assert maps and sorted(p.name for p in (merged / "maps").iterdir()) == maps
    for name in maps:
        assert_same_arrays(merged / "maps" / name, whole / "maps" / name)
    assert (merged / "report.pdf").stat().st_size > 0


def assert_same_arrays(merged: Path, whole: Path) -> None:
    with np.load(merged) as a, np.load(whole) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in b.files:
            if b[key].dtype.kind == "f":
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=f"{whole.name}:{key}")
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{whole.name}:{key}")


@pytest.fixture(scope="module")
def sharded(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The unsharded run and 3 parts (10, 10 and 4 images: shards are cut at the batches of 5)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sharded")
    valid = synthetic_root / "valid"
    assert main([str(a) for a in run_args(valid, MODELS / "biased.onnx", "--out", root / "whole")]) == 0
    for i in (1, 2, 3):
        assert main([str(a) for a in run_args(valid, MODELS / "biased.onnx", "--shard", f"{i}/3", "--out", root / "parts" / str(i))]) == 0
    return {"root": root, "valid": valid, "whole": root / "whole", "parts": root / "parts"}


def test_merged_parts_equal_the_unsharded_run(sharded, capsys) -> None:
    parts = sharded["parts"]
    for i in (1, 2, 3):
        document = json.loads((parts / str(i) / "part.json").read_text())
        start, stop = [(0, 10), (10, 20), (20, 24)][i - 1]  # 5 batches of 5 (the last of 4) = 2 + 2 + 1
        assert document["shard"] == {"index": i, "count": 3, "start": start, "stop": stop}
        assert document["listing"]["images"] == 24 and len(document["model"]["sha256"]) == 64
        assert not (parts / str(i) / "results.json").exists() and not (parts / str(i) / "report.pdf").exists()
        assert len((parts / str(i) / "per_image.partial.csv").read_text().splitlines()) == 1 + stop - start
    out = sharded["root"] / "merged"
    code, _, err = audit(["merge", parts / "3", parts / "1", parts / "2", "--out", out, "--quiet"], capsys)
    assert code == 0, err
    assert_same_run(out, sharded["whole"])


def test_merge_gates_like_run(sharded, capsys) -> None:
    parts = [sharded["parts"] / str(i) for i in (1, 2, 3)]
    out = sharded["root"] / "gated"
    code, _, err = audit(["merge", *parts, "--out", out, "--quiet", "--fail-on", "data.images > 20", "--junit", out / "junit.xml"], capsys)
    assert code == 1, err
    results = json.loads((out / "results.json").read_text())
    assert results["gate"]["passed"] is False and results["data"]["images"] == 24
    assert "testcase" in (out / "junit.xml").read_text()
    code, _, err = audit(["merge", *parts, "--out", out, "--quiet", "--fail-on", "methods.rise.performance.auc > 0"], capsys)
    assert_one_line_error(code, err, "rise")


def shard_into(args: list, out: Path) -> Path:
    assert main([str(a) for a in [*args, "--out", out]]) == 0
    return out


def test_merge_refuses_parts_that_are_not_one_run_covered_once(sharded, tmp_path, capsys) -> None:
    parts, valid = sharded["parts"], sharded["valid"]
    one, two, three = (parts / str(i) for i in (1, 2, 3))
    out = tmp_path / "out"
    cases = [
        ([one, three], ["shard 2/3 missing"]),
        ([one, two, two, three], ["shard 2/3 given twice"]),
    ]
    other_model = shard_into(run_args(valid, MODELS / "unbiased.onnx", "--shard", "2/3"), tmp_path / "model")
    cases.append(([one, other_model, three], [str(other_model), "model (sha256)"]))
    other_seed = shard_into(run_args(valid, MODELS / "biased.onnx", "--shard", "2/3", "--seed", "1"), tmp_path / "seed")
    cases.append(([one, other_seed, three], [str(other_seed), "options differ", "seed: 1 vs 0"]))
    fewer = tmp_path / "fewer"
    shutil.copytree(valid, fewer)
    next((fewer / "images").rglob("*.png")).unlink()
    other_data = shard_into(run_args(fewer, MODELS / "biased.onnx", "--shard", "2/3"), tmp_path / "data")
    cases.append(([one, other_data, three], [str(other_data), "dataset listing"]))
    unfinished = tmp_path / "unfinished"
    (unfinished / ".partial" / "x").mkdir(parents=True)
    cases.append(([one, unfinished, three], [str(unfinished), "unfinished part"]))
    for given, words in cases:
        code, _, err = audit(["merge", *given, "--out", out], capsys)
        assert_one_line_error(code, err, *words)
        assert not (out / "results.json").exists()


def test_a_part_whose_file_changed_is_refused(sharded, tmp_path, capsys) -> None:
    copy = shutil.copytree(sharded["parts"] / "2", tmp_path / "2")
    rows = copy / "per_image.partial.csv"
    rows.write_text(rows.read_text() + "extra\n")
    code, _, err = audit(["merge", sharded["parts"] / "1", copy, sharded["parts"] / "3", "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "per_image.partial.csv", "mixes two runs")


@pytest.mark.parametrize(("extra", "words"), [
    (["--shard", "3/2", "--out", "p"], ["--shard '3/2'", "1 <= I <= N"]),
    (["--shard", "1/2"], ["--shard 1/2", "needs --out"]),
    (["--shard", "1/2", "--out", "p", "--engine", "ray"], ["--shard 1/2", "--engine ray"]),
    (["--shard", "1/2", "--out", "p", "--fail-on", "data.images > 1"], ["--shard 1/2", "audit merge"]),
    (["--address", "127.0.0.1:1"], ["--address", "--engine ray"]),
    (["--shards", "2"], ["--shards", "--engine ray"]),
])
def test_bad_shard_options_are_one_line_errors(extra, words, synthetic_root, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = audit(run_args(synthetic_root / "valid", MODELS / "biased.onnx", *extra), capsys)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "p").exists()


def test_more_shards_than_images_is_a_one_line_error(synthetic_root, tmp_path, capsys) -> None:
    code, _, err = audit(run_args(synthetic_root / "valid", MODELS / "biased.onnx", "--shard", "30/30", "--out", tmp_path / "p"), capsys)
    assert_one_line_error(code, err, "30 shards of 24 images", "5 batch(es) of 5", "at most 5 shards")


def test_a_latent_shift_merge_reads_the_recorded_model_again(synthetic_root, tmp_path, capsys) -> None:
    """The strips need the classifier: the merge loads it from the path the parts recorded, and
    refuses it once the file there is another model. Batches of 12 = the shards' ranges: Latent
    Shift's maps move by ~1e-6 relative with the batch composition, which sharding is not about."""
    model = Path(shutil.copy(MODELS / "biased.onnx", tmp_path / "model.onnx"))
    valid = synthetic_root / "valid"
    args = ["run", model, "--data", valid / "images", "--masks", valid / "artefacts", "--method", "gradient", "--counterfactuals", "--autoencoder",
            MODELS / "autoencoder.pt", "--randomization-images", "0", "--batch-size", "12", "--quiet"]
    assert main([str(a) for a in [*args, "--out", tmp_path / "whole"]]) == 0
    parts = [shard_into([*args, "--shard", f"{i}/2"], tmp_path / "parts" / str(i)) for i in (1, 2)]
    code, _, err = audit(["merge", *parts, "--out", tmp_path / "merged", "--quiet"], capsys)
    assert code == 0, err
    assert_same_run(tmp_path / "merged", tmp_path / "whole")
    assert_same_arrays(tmp_path / "merged" / STRIPS, tmp_path / "whole" / STRIPS)
    shutil.copy(MODELS / "unbiased.onnx", model)
    code, _, err = audit(["merge", *parts, "--out", tmp_path / "again", "--quiet"], capsys)
    assert_one_line_error(code, err, str(model), "changed since the parts were written")


def test_the_run_block_names_the_device_and_a_merge_keeps_it(sharded, capsys) -> None:
    """results.json ``run.device``/``run.gpu``/``run.precision`` of the run (auto is the CPU here)
    and of a merge of parts run on it."""
    whole = json.loads((sharded["whole"] / "results.json").read_text())["run"]
    expected = {"device": "cuda:0", "gpu": torch.cuda.get_device_name(0)} if torch.cuda.is_available() else {"device": "cpu", "gpu": None}
    assert {key: whole[key] for key in ("device", "gpu", "precision")} == {**expected, "precision": "fp32"}
    out = sharded["root"] / "merged-run-block"
    assert audit(["merge", *(sharded["parts"] / str(i) for i in (1, 2, 3)), "--out", out, "--quiet"], capsys)[0] == 0
    merged = json.loads((out / "results.json").read_text())["run"]
    assert {key: merged[key] for key in ("device", "gpu", "precision")} == {key: whole[key] for key in ("device", "gpu", "precision")}


@pytest.mark.parametrize(("extra", "words"), [
    (["--workers", "-1"], ["--workers"]),
    (["--precision", "fp8"], ["--precision fp8", "fp32, bf16, fp16"]),
    (["--device", "tpu"], ["--device tpu"]),
])
def test_bad_device_options_are_one_line_errors(extra, words, synthetic_root, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = audit(run_args(synthetic_root / "valid", MODELS / "biased.onnx", "--out", "o", *extra), capsys)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: --device cuda is valid")
def test_cuda_without_a_gpu_is_a_one_line_error(synthetic_root, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = audit(run_args(synthetic_root / "valid", MODELS / "biased.onnx", "--out", "o", "--device", "cuda"), capsys)
    assert_one_line_error(code, err, "--device cuda", "no CUDA GPU", "--device cpu")
