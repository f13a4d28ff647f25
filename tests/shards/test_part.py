"""Shard ranges, part manifests and the merge's checks, on hand-made manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from audit.errors import AuditError
from audit.shards import parse_shard, shard_range
from audit.shards.part import FORMAT, MANIFEST, Part, difference, in_shard_order, listing_sha256, read_part


@pytest.mark.parametrize(("total", "count", "batch", "expected"), [
    (10, 3, 1, [(0, 4), (4, 7), (7, 10)]),  # 10 = 4 + 3 + 3: the first 10 % 3 = 1 range is larger
    (24, 3, 1, [(0, 8), (8, 16), (16, 24)]),
    (5, 5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
    (7, 1, 1, [(0, 7)]),
    (24, 3, 5, [(0, 10), (10, 20), (20, 24)]),  # 5 batches (the last of 4 images) = 2 + 2 + 1
    (10, 3, 4, [(0, 4), (4, 8), (8, 10)]),  # 3 batches, one each
    (64, 2, 32, [(0, 32), (32, 64)]),
])
def test_shard_ranges_are_the_hand_counted_contiguous_unpadded_ranges(total, count, batch, expected) -> None:
    assert [(r.start, r.stop) for r in (shard_range(total, i, count, batch) for i in range(1, count + 1))] == expected


@pytest.mark.parametrize("text", ["3/2", "0/2", "a/b", "2", "1/0", "-1/2", ""])
def test_a_shard_that_is_not_I_of_N_is_a_one_line_error(text) -> None:
    with pytest.raises(AuditError, match="--shard"):
        parse_shard(text)
    assert parse_shard(" 2/4 ") == (2, 4)


def test_the_listing_hash_is_sha256_over_json_lines_of_path_and_label() -> None:
    entries = [("0/a.png", 0), ("1/b\tc.png", 1)]
    expected = hashlib.sha256(b'["0/a.png", 0]\n["1/b\\tc.png", 1]\n').hexdigest()
    assert listing_sha256(entries) == expected
    assert listing_sha256(entries[::-1]) != expected  # the order is part of the listing
    assert listing_sha256([("0/a.png", 1), entries[1]]) != expected  # and the labels


def manifest(index: int, count: int, images: int = 10, seed: int = 0, model: str = "m" * 64, listing: str = "l" * 64) -> dict:
    span = shard_range(images, index, count, 1)
    return {"format": FORMAT, "shard": {"index": index, "count": count, "start": span.start, "stop": span.stop},
            "model": {"path": "model.onnx", "sha256": model}, "options": {"seed": seed, "methods": ["gradient"], "batch_size": 1},
            "listing": {"sha256": listing, "images": images}, "device": "cpu", "command": "audit run"}


def part(index: int, count: int, **changes) -> Part:
    return Part(Path(f"parts/{index}"), manifest(index, count, **changes))


def test_parts_come_back_in_shard_order() -> None:
    parts = in_shard_order([part(3, 3), part(1, 3), part(2, 3)])
    assert [p.index for p in parts] == [1, 2, 3]


@pytest.mark.parametrize(("parts", "words"), [
    ([part(1, 3), part(3, 3)], ["shard 2/3 missing", "2 of 3"]),
    ([part(1, 2), part(2, 2), part(2, 2)], ["shard 2/2 given twice"]),
    ([part(1, 2), part(2, 2, model="x" * 64)], ["parts/2", "model (sha256)"]),
    ([part(1, 2), part(2, 2, listing="y" * 64)], ["parts/2", "dataset listing"]),
    ([part(1, 2), part(2, 2, seed=1)], ["parts/2", "options differ", "seed: 1 vs 0"]),
    ([part(1, 2), part(2, 3)], ["parts/2", "shard count"]),
])
def test_the_merge_refuses_what_is_not_one_run_covered_once(parts, words) -> None:
    with pytest.raises(AuditError) as caught:
        in_shard_order(parts)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_difference_names_the_first_differing_key_path() -> None:
    assert difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c: 3 vs 2"
    assert difference({"a": [1]}, {"a": [1]}) is None
    assert difference({"a": 1}, {}) == "a: null vs 1"


def test_a_folder_that_is_no_finished_part_is_named_with_the_fix(tmp_path) -> None:
    with pytest.raises(AuditError, match="not a folder"):
        read_part(tmp_path / "absent")
    with pytest.raises(AuditError, match="no part.json, not a part"):
        read_part(tmp_path)
    (tmp_path / ".partial" / "run").mkdir(parents=True)
    with pytest.raises(AuditError, match="unfinished part"):
        read_part(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest(1, 2), "format": "audit.part/0"}))
    with pytest.raises(AuditError, match="format 'audit.part/0'"):
        read_part(tmp_path)
    broken = manifest(1, 2)
    broken["shard"]["stop"] = 9  # not the range 1/2 of 10 images
    (tmp_path / MANIFEST).write_text(json.dumps(broken))
    with pytest.raises(AuditError, match="malformed manifest"):
        read_part(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest(1, 2)))
    with pytest.raises(AuditError, match="per_image.partial.csv: missing"):
        read_part(tmp_path)
