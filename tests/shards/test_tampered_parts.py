"""Parts edited by hand (part.json and state.json changed, the hashes in part.json recomputed so
that the files look consistent) are refused by ``audit merge`` in one line, before any file
that state.json names is opened and before any array its metadata sizes is allocated."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from audit.cli.main import main
from audit.errors import AuditError
from audit.shards import parse_shard
from audit.shards.merge import merged_state, read_parts
from tests.conftest import assert_one_line_error

MODELS = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def parts(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards 1/2 and 2/2 (12 images each) of the biased sample model, gradient only."""
    root = tmp_path_factory.mktemp("parts")
    valid = synthetic_root / "valid"
    for i in (1, 2):
        args = ["run", MODELS / "biased.onnx", "--data", valid / "images", "--masks", valid / "artefacts", "--method",
                "gradient", "--randomization-images", "0", "--batch-size", "12", "--quiet", "--shard", f"{i}/2",
                "--out", root / str(i)]
        assert main([str(a) for a in args]) == 0
    return root


def tampered(parts: Path, tmp_path: Path, edit: Callable[[dict, dict, Path], None]) -> Path:
    """A copy of part 2 with ``edit(part_json, state_json, folder)`` applied and part.json's
    output hashes recomputed, as a careful hand-editor would."""
    folder = tmp_path / "2"
    shutil.copytree(parts / "2", folder)
    document = json.loads((folder / "part.json").read_text())
    state = json.loads((folder / "state.json").read_text())
    edit(document, state, folder)
    (folder / "state.json").write_text(json.dumps(state))
    for name in document["run"]["outputs"]:
        document["run"]["outputs"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "part.json").write_text(json.dumps(document))
    return folder


def merge(parts: Path, second: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["merge", str(parts / "1"), str(second), "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("text", ["²/2", "1/²", "١/2"])
def test_a_shard_in_other_digits_is_a_one_line_error(text) -> None:
    with pytest.raises(AuditError, match="write I/N"):
        parse_shard(text)


@pytest.mark.parametrize("rows", ["/etc/passwd", "../../../../etc/passwd", "../1/per_image.partial.csv"])
def test_a_state_naming_rows_outside_its_part_is_refused_unread(parts, tmp_path, capsys, monkeypatch, rows) -> None:
    import pandas

    def never(*args, **kwargs):  # the refusal comes before any CSV is read
        raise AssertionError(f"read_csv called: {args}")

    monkeypatch.setattr(pandas, "read_csv", never)
    second = tampered(parts, tmp_path, lambda document, state, folder: state["meta"].update(csv=[rows]))
    code, err = merge(parts, second, tmp_path / "out", capsys)
    assert_one_line_error(code, err, "state.json: its csv", rows, "per_image.partial.csv")
    assert not (tmp_path / "out").exists()


def test_a_state_sized_otherwise_than_its_part_is_refused_before_allocating(parts, tmp_path, capsys) -> None:
    second = tampered(parts, tmp_path, lambda document, state, folder: state["meta"].update(shape=[10**6, 10**6]))
    code, err = merge(parts, second, tmp_path / "out", capsys)
    assert_one_line_error(code, err, "state.json: its shape", "[1000000, 1000000]", "[28, 28]")


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d, s, f: s["meta"].update(class_names=["a"] * 1000), ["its classes"]),
    (lambda d, s, f: s["meta"]["config"].update(seed=7), ["its seed (7)", "(0)"]),
    (lambda d, s, f: s["meta"]["config"].update(shard=[1, 2]), ["its shard ([1, 2])", "([2, 2])"]),
    (lambda d, s, f: s["meta"]["model"].update(sha256="0" * 64), ["its model"]),
    (lambda d, s, f: s.update(meta=[]), ["not a readable run state"]),
])
def test_a_state_that_is_not_its_part_json_s_is_refused(parts, tmp_path, capsys, edit, words) -> None:
    code, err = merge(parts, tampered(parts, tmp_path, edit), tmp_path / "out", capsys)
    assert_one_line_error(code, err, "2/state.json", *words)


@pytest.mark.parametrize("field", ["index", "count", "start", "stop"])
@pytest.mark.parametrize("spelling", [str, float, lambda n: [n]])
def test_a_manifest_whose_numbers_are_not_integers_is_malformed(parts, tmp_path, capsys, field, spelling) -> None:
    """2 as "2", 2.0 or [2] was taken as 2 by int(); the shard's name then read "2/2" for a
    string index that matched no other part's."""
    def edit(document: dict, state: dict, folder: Path) -> None:
        document["shard"][field] = spelling(document["shard"][field])

    code, err = merge(parts, tampered(parts, tmp_path, edit), tmp_path / "out", capsys)
    assert_one_line_error(code, err, "2/part.json: malformed manifest")


def test_a_state_missing_images_of_its_range_is_refused(parts, tmp_path) -> None:
    def drop_images(document: dict, state: dict, folder: Path) -> None:
        with np.load(folder / "state.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        arrays["data/paths"] = arrays["data/paths"][:5]
        np.savez(folder / "state.npz", **arrays)

    second = tampered(parts, tmp_path, drop_images)
    with pytest.raises(AuditError, match=r"its run state holds 5 images, its shard 2/2 has 12"):
        merged_state(read_parts([parts / "1", second]))
