"""What a run will cost, in model passes, before it starts: said when it is large.

Per method, ``SaliencyMethod.passes(shape)`` forward (and backward) passes per image: 1 for a
gradient, ``n_steps`` for integrated gradients, samples × n_steps for smoothgrad-ig (2,500 by
default), one per window for occlusion, ``masks`` for RISE. The main pass costs
images × Σ passes. The randomisation check recomputes every method's maps on its images once
as trained and once per step, a step per layer with parameters in the cascading and in the
independent test: images_r × Σ passes × (1 + 2 · layers). The estimate counts passes, not
seconds (a pass of a hooked method costs more than a plain gradient's); it is printed when a
method takes at least ``EXPENSIVE`` passes per image or the check costs more than the main pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.saliency.base import SaliencyMethod

#: passes per image from which a method's cost is announced
EXPENSIVE = 100


@dataclass(frozen=True)
class RunCost:
    per_image: dict[str, int]  # passes per image, per method
    images: int
    randomisation_images: int
    layers: int

    @property
    def main(self) -> int:
        return self.images * sum(self.per_image.values())

    @property
    def randomisation(self) -> int:
        return self.randomisation_images * sum(self.per_image.values()) * (1 + 2 * self.layers)

    def warning(self) -> str | None:
        """One line when the run is expensive (module docstring), naming what to change; else None."""
        costly = {name: passes for name, passes in self.per_image.items() if passes >= EXPENSIVE}
        heavy_check = self.randomisation > self.main
        if not costly and not heavy_check:
            return None
        parts = [f"{name} {passes:,} passes per image" for name, passes in costly.items()]
        line = (f"this run takes about {self.main + self.randomisation:,} model passes: {self.main:,} for "
                f"{self.images:,} images" + (f" ({', '.join(parts)})" if parts else "")
                + f", {self.randomisation:,} for the randomisation check ({self.randomisation_images} images × "
                f"{1 + 2 * self.layers} steps)")
        fixes = []
        if costly:
            fixes.append("fewer samples or steps (`audit methods` lists each method's options)")
        if heavy_check:
            fixes.append("a smaller --randomization-images (0 skips the check)")
        return f"{line}; to shorten it: {' or '.join(fixes)}"


def run_cost(built: dict[str, SaliencyMethod], shape: tuple[int, int, int], images: int, randomisation_images: int,
             layers: int) -> RunCost:
    return RunCost({name: method.passes(shape) for name, method in built.items()}, images,
                   min(randomisation_images, images), layers)
