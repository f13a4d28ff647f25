"""A run split into shards, saved, loaded and merged is the run over the whole dataset: the
biased sample model on 24 synthetic images, shards 1/2 and 2/2 against ``run_audit``."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from audit.data.dataset import open_dataset
from audit.errors import AuditError
from audit.metrics.run_state import STATE_JSON, STATE_NPZ, RunState
from audit.models.loader import load_classifier
from audit.pipeline import RunConfig, finish_run, run_audit, stream_run
from audit.report.results_file import dumps
from audit.stages.randomisation import choose_images

MODEL = Path(__file__).resolve().parents[2] / "sample_models" / "biased.onnx"
TIMING = "seconds_per_layer_per_image"


def dataset(root: Path):
    valid = root / "valid"
    return open_dataset(valid / "images", size=(28, 28), channels=1, masks=valid / "artefacts", regions=valid / "regions")


def config(**options: Any) -> RunConfig:
    return RunConfig(methods=["gradient"], randomization_images=5, batch_size=4, seed=0, **options)


@pytest.fixture(scope="module")
def runs(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    classifier = load_classifier(MODEL)
    root = tmp_path_factory.mktemp("sharded")
    whole = run_audit(classifier, dataset(synthetic_root), config(), root / "whole")
    for index in (1, 2):
        stream_run(classifier, dataset(synthetic_root), config(shard=(index, 2)), root / "parts" / str(index)).save(
            root / "parts" / str(index))
    merged = RunState.load(root / "parts" / "1")
    merged.merge(RunState.load(root / "parts" / "2"))
    return {"root": root, "whole": whole, "merged": finish_run(merged, root / "merged"), "classifier": classifier}


def comparable(results: dict[str, Any]) -> Any:
    """results.json as written, without the creation time and the randomisation's wall time."""
    results = json.loads(dumps(results))
    del results["created"]
    for method in results["methods"].values():
        method["randomization"].pop(TIMING)
    return results


def assert_close(mine: Any, theirs: Any, where: str = "") -> None:
    if isinstance(mine, dict):
        assert set(mine) == set(theirs), where
        for key in mine:
            assert_close(mine[key], theirs[key], f"{where}/{key}")
    elif isinstance(mine, list):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(mine, float) and isinstance(theirs, float):
        assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-300), where
    else:
        assert mine == theirs, where


def test_merged_shards_write_the_whole_runs_outputs(runs):
    root = runs["root"]
    assert (root / "merged" / "per_image.csv").read_text() == (root / "whole" / "per_image.csv").read_text()
    assert not (root / "whole" / "per_image.partial.csv").exists()
    assert (root / "parts" / "1" / "per_image.partial.csv").exists()  # a part's rows stay with the part
    whole, merged = comparable(runs["whole"]), comparable(runs["merged"])
    assert merged["methods"]["gradient"]["randomization"] == whole["methods"]["gradient"]["randomization"]
    assert merged["data"]["images"] == 24 and merged["methods"]["gradient"]["randomization"]["images"] == 5
    assert_close(merged, whole)


def test_only_shard_1_runs_the_randomisation_stage(runs):
    first, second = (RunState.load(runs["root"] / "parts" / str(i)) for i in (1, 2))
    assert len(first.methods["gradient"].randomisation.paths) == 5
    assert second.methods["gradient"].randomisation.compute()["cascading"] is None
    assert len(first.data.paths) == len(second.data.paths) == 12


def test_randomisation_images_are_the_smallest_path_hashes_whatever_the_order(synthetic_root):
    data = dataset(synthetic_root)
    paths = [path for path, _ in data.entries]
    expected = sorted(paths, key=lambda p: hashlib.sha256(p.encode()).hexdigest())[:5]
    assert choose_images(data, 5).paths == expected
    random.Random(0).shuffle(data.entries)
    assert choose_images(data, 5).paths == expected


def test_a_path_in_two_parts_is_refused(runs):
    first = RunState.load(runs["root"] / "parts" / "1")
    with pytest.raises(AuditError, match=r"^image .* is in two of the merged states"):
        first.merge(RunState.load(runs["root"] / "parts" / "1"))


def test_parts_with_other_options_are_refused(runs, synthetic_root, tmp_path):
    other = stream_run(runs["classifier"], dataset(synthetic_root), RunConfig(methods=["gradient"], randomization_images=0,
                                                                              batch_size=4, shard=(2, 2)), tmp_path)
    first = RunState.load(runs["root"] / "parts" / "1")
    with pytest.raises(AuditError, match="different randomization_images"):
        first.merge(other)


@pytest.mark.parametrize("name", [STATE_JSON, STATE_NPZ])
def test_a_malformed_state_file_is_a_one_line_error_naming_it(runs, tmp_path, name):
    folder = tmp_path / "part"
    RunState.load(runs["root"] / "parts" / "2").save(folder)
    (folder / name).write_bytes(b"{not a state")
    with pytest.raises(AuditError, match=rf"^{folder / name}: not a readable run state") as error:
        RunState.load(folder)
    assert "\n" not in str(error.value)
    (folder / name).unlink()
    with pytest.raises(AuditError, match="run state not found"):
        RunState.load(folder)


def test_a_saved_state_holds_no_pickle(runs):
    import numpy as np

    with np.load(runs["root"] / "parts" / "1" / STATE_NPZ, allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
    assert not math.isnan(json.loads((runs["root"] / "parts" / "1" / STATE_JSON).read_text())["meta"]["config"]["seed"])


def test_a_shard_beyond_the_images_is_empty_and_merges_to_nothing_more(runs, synthetic_root, tmp_path):
    """30 shards of 24 images: shard 30's range is empty; merged after the others it adds nothing."""
    empty = stream_run(runs["classifier"], dataset(synthetic_root), config(shard=(30, 30)), tmp_path)
    assert empty.data.paths == [] and (tmp_path / "per_image.partial.csv").read_text().count("\n") == 1
    merged = RunState.load(runs["root"] / "parts" / "1")
    merged.merge(RunState.load(runs["root"] / "parts" / "2"))
    merged.merge(empty)
    assert_close(comparable(finish_run(merged, tmp_path / "merged")), comparable(runs["whole"]))


@pytest.mark.parametrize("csv", ["/etc/passwd", "../1/per_image.partial.csv"])
def test_a_state_naming_rows_outside_its_folder_is_refused(runs, tmp_path, csv):
    """A hand-edited state.json cannot make a merge read a file outside the part folder."""
    folder = tmp_path / "part"
    RunState.load(runs["root"] / "parts" / "2").save(folder)
    assert sorted(p.name for p in folder.glob("*.csv")) == ["per_image.partial.1.csv"]  # the rows came along
    tree = json.loads((folder / STATE_JSON).read_text())
    tree["meta"]["csv"] = [csv]
    (folder / STATE_JSON).write_text(json.dumps(tree))
    with pytest.raises(AuditError, match=rf"^{folder / STATE_JSON}: not a readable run state .*not a file inside the part folder"):
        RunState.load(folder)
