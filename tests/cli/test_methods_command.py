"""``audit methods``: every registered method's options, against the method class's own signature."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from audit.cli.main import main
from audit.counterfactual.search import SearchRule
from audit.saliency import methods


def _keywords(cls: type) -> list[str]:
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def test_json_lists_every_method_with_every_option_typed_defaulted_and_explained(capsys) -> None:
    assert main(["methods", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert sorted(listed) == sorted(methods.names())
    for name, entry in listed.items():
        cls = methods.get(name)
        expected = _keywords(cls)
        if name.startswith("latentshift-"):  # the λ search thresholds arrive as **thresholds
            expected += [f.name for f in dataclasses.fields(SearchRule) if f.name != "name"]
        assert [o["name"] for o in entry["options"]] == expected, name
        for option in entry["options"]:
            assert option["meaning"], f"{name}.{option['name']} has no meaning"
        defaults = {p.name: p.default for p in inspect.signature(cls).parameters.values()}
        for option in entry["options"]:
            if option["name"] in defaults:
                assert option["default"] == defaults[option["name"]]
    assert [(o["name"], o["type"], o["default"]) for o in listed["integrated-gradients"]["options"]] == [("n_steps", "int", 50)]
    assert listed["occlusion"]["needs"] == ["forward passes only"] and listed["gradient"]["options"] == []


def test_text_listing_prints_names_whole_at_80_columns(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["methods", "smoothgrad-ig", "latentshift-max"]) == 0
    out = capsys.readouterr().out
    assert "-o smoothgrad-ig.noise_level=…  float, default 0.15:" in out
    assert "-o latentshift-max.max_pixel_change=…" in out and "…" not in out.replace("=…", "")


def test_unknown_method_is_one_line_exit_2(capsys) -> None:
    assert main(["methods", "integrated-gradient"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such method" in err and "integrated-gradients" in err


@pytest.mark.parametrize("flag", ["--version"])
def test_version(flag: str, capsys) -> None:
    from importlib.metadata import version

    assert main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"audit {version('audit')}"


def test_plugins_json_lists_the_registries(capsys) -> None:
    from audit.data.readers import readers

    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {(entry["group"], entry["name"]) for entry in listing["registered"]}
    assert {("audit.methods", name) for name in methods.names()} <= names
    assert {("audit.readers", name) for name in readers.names()} <= names
    assert ("audit.methods", "rise") in names and isinstance(listing["not_loaded"], list)
