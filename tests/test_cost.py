"""The cost estimate printed before an expensive run, against hand-counted passes."""

from __future__ import annotations

from audit.cost import run_cost
from audit.saliency import methods


def test_passes_per_method_and_the_warning() -> None:
    built = {name: methods.get(name)() for name in ("gradient", "integrated-gradients", "smoothgrad-ig", "occlusion")}
    cost = run_cost(built, (1, 32, 32), images=50, randomisation_images=8, layers=5)
    # occlusion: window 4 px, stride 2 px on 32 px: (32 - 4) // 2 + 1 = 15 positions a side, plus the original
    assert cost.per_image == {"gradient": 1, "integrated-gradients": 50, "smoothgrad-ig": 2500, "occlusion": 15 * 15 + 1}
    total = 1 + 50 + 2500 + 226
    assert cost.main == 50 * total and cost.randomisation == 8 * total * 11
    line = cost.warning()
    assert line.startswith(f"this run takes about {50 * total + 8 * total * 11:,} model passes")
    assert "smoothgrad-ig 2,500 passes per image" in line and "integrated-gradients" not in line
    assert "--randomization-images" in line  # the check (8 images × 11 steps) costs more than 50 images


def test_a_cheap_run_says_nothing() -> None:
    cost = run_cost({"gradient": methods.get("gradient")()}, (3, 224, 224), images=2000, randomisation_images=32, layers=20)
    assert cost.randomisation == 32 * 41 < cost.main == 2000
    assert cost.warning() is None
    assert run_cost({"gradient": methods.get("gradient")()}, (3, 224, 224), 10, 32, 20).randomisation_images == 10
