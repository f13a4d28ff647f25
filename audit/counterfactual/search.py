"""The λ search of Latent Shift (Cohen et al. 2021, §4.2 and Appendix C; ``ALGORITHMS.md``).

From λ = 0, step λ away from 0 (down: the prediction p_λ = f(D(z + λg))_t should fall) and stop
at the first λ where any of these holds, keeping that λ as the bound (as both public codes do):

- the prediction turns back: p_λ > p_prev + ``turn_tolerance`` (down), p_λ < p_prev − it (up);
- it moved by the requested amount: p_0 − p_λ > ``drop`` (down) or p_λ − p_0 > ``rise`` (up);
- it passed a floor: p_λ < ``floor`` (down) or p_λ > 1 − ``floor`` (up);
- |λ| ≥ ``bound``;
- the image changed too much: Σ|x_0 − x_λ| > ``max_pixel_change`` · Σ|x_0|.

Two rules ship. ``paper``: the paper's §4.2 targets (prediction lowered by 0.30 and raised by 0.05,
so an upper bound is searched too), steps of 10 to |λ| = 1000 (Appendix C), and the floor 0.05 of
the authors' later ``latentshift`` package, and a turn tolerance of 0.01 (a saturated p ≈ 0.999
wobbles by 1e-4 under small shifts, which would otherwise end the search at its first step). ``public``: the gifsplanation ``attribution.py`` rule,
steps of −1 while |λ| < 10 then −10, a 0.15 drop, λ ≥ −1000, no tolerance, no upper search. Every threshold can be
overridden. Images are searched in lock-step so that each step is one batch (``search``).

Thresholds must be finite: ``drop`` and ``rise`` in (0, 1], ``floor`` in [0, 1), ``turn_tolerance`` in
[0, 1], ``max_pixel_change`` ≥ 0, ``step`` and ``fine_step`` > 0, ``bound`` in (0, ``MAX_BOUND`` = 10⁶],
and a search may take at most ``MAX_STEPS`` = 1000 steps per direction (the paper's rule takes 100,
the public one 109), so that every search ends.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from audit.errors import AuditError

# Why a search stopped, per image.
TURNED, MOVED, FLOOR, BOUND, PIXELS = "turned", "moved", "floor", "bound", "pixels"
MAX_BOUND = 1e6
MAX_STEPS = 1000


@dataclass(frozen=True)
class SearchRule:
    """Thresholds of the λ search; ``rise=None`` searches no upper bound (λ_high = 0)."""

    name: str = "paper"
    drop: float = 0.30
    rise: float | None = 0.05
    floor: float | None = 0.05
    bound: float = 1000.0
    step: float = 10.0
    fine_step: float | None = None  # steps of this size while |λ| < step (the public rule's −1)
    max_pixel_change: float | None = None
    turn_tolerance: float = 0.01

    def __post_init__(self) -> None:
        ranges = {
            "drop": (self.drop, 0 < self.drop <= 1, "in (0, 1]"),
            "rise": (self.rise, self.rise is None or 0 < self.rise <= 1, "in (0, 1]"),
            "floor": (self.floor, self.floor is None or 0 <= self.floor < 1, "in [0, 1)"),
            "bound": (self.bound, 0 < self.bound <= MAX_BOUND, f"in (0, {MAX_BOUND:.0e}]"),
            "step": (self.step, self.step > 0, "> 0"),
            "fine-step": (self.fine_step, self.fine_step is None or self.fine_step > 0, "> 0"),
            "max-pixel-change": (self.max_pixel_change, self.max_pixel_change is None or self.max_pixel_change >= 0, ">= 0"),
            "turn-tolerance": (self.turn_tolerance, 0 <= self.turn_tolerance <= 1, "in [0, 1]"),
        }
        for flag, (value, ok, bounds) in ranges.items():
            if value is not None and not (math.isfinite(value) and ok):
                raise AuditError(f"λ search --{flag} {value}: must be a finite number {bounds}")
        if self.steps > MAX_STEPS:
            raise AuditError(
                f"λ search --bound {self.bound} with --step {self.step} (--fine-step {self.fine_step}) takes "
                f"{self.steps:.0f} steps per direction, more than {MAX_STEPS}; raise the steps or lower the bound"
            )

    @property
    def steps(self) -> float:
        """Steps from λ = 0 to |λ| ≥ bound: fine steps up to ``step``, then steps of ``step``."""
        fine = min(self.step, self.bound) if self.fine_step is not None else 0.0
        count = fine / self.fine_step if self.fine_step is not None else 0.0
        return _ceil(count) + _ceil(max(self.bound - fine, 0.0) / self.step)

    def next_lambda(self, lam: np.ndarray, sign: float) -> np.ndarray:
        """One step away from 0 in direction ``sign``: the fine step while |λ| < step, else step."""
        size = np.full_like(lam, self.step)
        if self.fine_step is not None:
            size = np.where(np.abs(lam) < self.step, self.fine_step, size)
        return lam + sign * size


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


RULES: dict[str, SearchRule] = {
    "paper": SearchRule(),
    "public": SearchRule(name="public", drop=0.15, rise=None, floor=None, bound=1000.0, step=10.0, fine_step=1.0, turn_tolerance=0.0),
}


def rule(name: str, **overrides: float | None) -> SearchRule:
    """The named rule with the given thresholds replaced (``None`` values are ignored)."""
    if name not in RULES:
        raise AuditError(f"λ search rule {name!r}: use one of {', '.join(RULES)}")
    return dataclasses.replace(RULES[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class SearchResult:
    """Per image: the bound λ, why the search stopped there, and the prediction at it."""

    bound: np.ndarray
    reason: list[str]
    prediction: np.ndarray


#: evaluate(indices, λ) → (p_λ, Σ|x_0 − x_λ| / Σ|x_0|) for the images ``indices``, in one batch.
Evaluate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def search(rule: SearchRule, p0: np.ndarray, evaluate: Evaluate, sign: float = -1.0) -> SearchResult:
    """Search every image's bound in direction ``sign`` (−1: lower, +1: upper) in lock-step."""
    n = len(p0)
    lam = np.zeros(n)
    last = np.asarray(p0, dtype=float).copy()
    current = last.copy()
    reason = [""] * n
    active = np.arange(n)
    change = np.zeros(n)
    target = rule.drop if sign < 0 else rule.rise
    while len(active):
        nonzero = active[lam[active] != 0]
        if len(nonzero):
            current[nonzero], change[nonzero] = evaluate(nonzero, lam[nonzero])
        still = []
        for i in active:
            moved = sign * (current[i] - p0[i])
            checks = (
                (TURNED, sign * (current[i] - last[i]) < -rule.turn_tolerance),
                (MOVED, target is not None and moved > target),
                (FLOOR, rule.floor is not None and (current[i] < rule.floor if sign < 0 else current[i] > 1 - rule.floor)),
                (BOUND, abs(lam[i]) >= rule.bound),
                (PIXELS, rule.max_pixel_change is not None and change[i] > rule.max_pixel_change),
            )
            stop = next((name for name, hit in checks if hit), None)
            if stop is None:
                still.append(i)
            else:
                reason[i] = stop
        active = np.array(still, dtype=int)
        last[active] = current[active]
        lam[active] = rule.next_lambda(lam[active], sign)
    return SearchResult(bound=lam, reason=reason, prediction=current)
