"""Latent Shift counterfactuals for a batch of images (Cohen et al. 2021, "Gifsplanation via
Latent Shift", §3 and §4.2), batched across images and frames.

For images x (N, C, H, W) in [0, 1], an autoencoder (E, D) and a classifier f with the model's
preprocessing n(·): z = E(x), x_0 = D(z), p(z) = softmax(f(n(D(z))))_t (sigmoid for multilabel
models), g = ∂p/∂z. Shifted images are x_λ = D(z + λ·ĝ), where ĝ = g (``direction="gradient"``,
the paper) or ĝ = g · ‖z‖ / (100‖g‖) (``"unit"``, the default: λ = −100 moves the code by its own
length). The unit direction is the paper's direction with another length: a confident classifier
has p ≈ 1 and ∂p/∂z ≈ 0, so the paper's λ steps of 10 up to 1000 never move its prediction.

Each image's λ range comes from the λ search (``search.py``), every search step being one batch
for all images still searching; the frames (``frames`` evenly spaced λ from λ_low to 0, then
``upper_frames`` up to λ_high when the rule searches upward) are decoded and classified in
batches of ``chunk`` (64: per image, the 28 px decoder ran 1.8x slower in batches of 256, whose
activations leave the CPU caches). The maps are those of ``maps.py``. Appendix K: the
reconstruction alone changes predictions, so f(x) (``p_original``) and f(x_0) (``p_start``)
are both returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from audit.counterfactual.maps import MAPS
from audit.counterfactual.search import RULES, SearchRule, search
from audit.errors import AuditError
from audit.models.classifier import Classifier

DIRECTIONS = ("unit", "gradient")
#: Status per image: the prediction fell by the rule's drop (or under its floor), fell by less,
#: or moved by less than ``min_change`` (the search never changed the prediction).
REACHED, PARTIAL, UNCHANGED = "reached", "partial", "unchanged"
#: Most frames below and above λ = 0 (``frames``, ``upper_frames``): each is decoded and classified.
MAX_FRAMES = 1000


@dataclass(frozen=True)
class ShiftOptions:
    rule: SearchRule = field(default_factory=lambda: RULES["paper"])
    frames: int = 10
    upper_frames: int = 3
    direction: str = "unit"
    min_change: float = 0.01
    chunk: int = 64

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise AuditError(f"direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        if not 2 <= self.frames <= MAX_FRAMES:
            raise AuditError(f"--frames {self.frames}: must be from 2 to {MAX_FRAMES}")
        if not 0 <= self.upper_frames <= MAX_FRAMES:
            raise AuditError(f"--upper-frames {self.upper_frames}: must be from 0 to {MAX_FRAMES}")
        if self.chunk < 1:
            raise AuditError(f"chunk {self.chunk}: must be >= 1")

    @property
    def frame_count(self) -> int:
        return self.frames + (self.upper_frames if self.rule.rise is not None else 0)

    def batch_size(self, shape: tuple[int, int, int], budget: int = 256 << 20, most: int = 128) -> int:
        """Images per ``explain_batch`` call when the user gives none: as many as keep one batch's
        frames (``frame_count`` float32 images of ``shape`` each) within ``budget`` bytes, at most
        ``most``. Larger batches keep more images in every step of the lock-step λ search, whose
        last steps run on the images still searching (a third of them on the sample data).
        Measured on 2 CPU cores, 28 px sample models, 128 images, best of 4: 85, 105, 124 and
        130 images/s in batches of 16, 32, 64 and 128."""
        per_image = self.frame_count * int(np.prod(shape)) * 4
        return max(1, min(most, budget // per_image))


@dataclass
class Explanation:
    """Per image (N) and frame (F, ascending λ; frame ``zero`` is λ = 0, i.e. x_0 = D(E(x)))."""

    target: np.ndarray  # (N,) class explained
    p_original: np.ndarray  # (N,) f(x)_t
    p_start: np.ndarray  # (N,) f(D(E(x)))_t
    class_original: np.ndarray  # (N,) argmax f(x)
    class_reconstruction: np.ndarray  # (N,) argmax f(D(E(x))) (Appendix K)
    lambda_low: np.ndarray  # (N,)
    lambda_high: np.ndarray  # (N,)
    reason_low: list[str]
    reason_high: list[str]
    lambdas: np.ndarray  # (N, F)
    frames: np.ndarray  # (N, F, C, H, W) in [0, 1]
    predictions: np.ndarray  # (N, F) f(x_λ)_t
    zero: int
    maps: dict[str, np.ndarray]  # name → (N, H, W)
    status: list[str]

    @property
    def p_end(self) -> np.ndarray:
        """The prediction at λ_low (the counterfactual)."""
        return self.predictions[:, 0]

    @property
    def pixel_change(self) -> np.ndarray:
        """mean |x_λlow − x_0| per image, in [0, 1] pixel units."""
        return np.abs(self.frames[:, 0] - self.frames[:, self.zero]).reshape(len(self.frames), -1).mean(axis=1)


def preprocessing(classifier: Classifier) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of shape (1, C, 1, 1) with n(x) = a·x + b, the model's value range, mean and std."""
    channels = classifier.spec.channels
    zeros = classifier.to_input(np.zeros((1, 1, 1, channels), np.float32))
    ones = classifier.to_input(np.ones((1, 1, 1, channels), np.float32))
    return ones - zeros, zeros


class _Shift:
    """z, ĝ, the targets and batched evaluation of shifted images for one call of explain_batch."""

    def __init__(self, classifier: Classifier, autoencoder: nn.Module, options: ShiftOptions) -> None:
        self.classifier, self.autoencoder, self.options = classifier, autoencoder, options
        self.scale, self.offset = preprocessing(classifier)

    def probability(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.classifier.logits(images * self.scale + self.offset)
        return self.classifier.probabilities(logits).gather(1, target[:, None])[:, 0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.autoencoder.decode(z)
        if not torch.isfinite(out).all():
            raise AuditError("the autoencoder decoded NaN or infinite pixels; retrain it or lower the λ bound (--bound)")
        return out

    def direction(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = E(x) and ĝ (see the module docstring)."""
        with torch.no_grad():
            z = self.autoencoder.encode(x)
        z = z.detach().requires_grad_(True)
        logits = self.classifier.differentiable(self.decode(z) * self.scale + self.offset)
        p = self.classifier.probabilities(logits).gather(1, target[:, None])[:, 0]
        (g,) = torch.autograd.grad(p.sum(), z)
        if self.options.direction == "unit":
            dims = tuple(range(1, z.ndim))
            length = z.detach().pow(2).sum(dims, keepdim=True).sqrt() / (100 * g.pow(2).sum(dims, keepdim=True).sqrt())
            g = g * torch.nan_to_num(length, nan=0.0, posinf=0.0)
        return z.detach(), g

    @torch.no_grad()
    def run(self, z: torch.Tensor, g: torch.Tensor, lam: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode and classify z_i + λ_i ĝ_i (rows of equal length), ``chunk`` at a time."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        images, preds = [], []
        for start in range(0, len(z), self.options.chunk):
            part = slice(start, start + self.options.chunk)
            decoded = self.decode(z[part] + lam[part].reshape(shape) * g[part])
            images.append(decoded)
            preds.append(self.probability(decoded, target[part]))
        return torch.cat(images), torch.cat(preds)


def _as_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """NCHW tensors pass through; (N, H, W, C) arrays (``Batch.images``) are transposed."""
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
    return images.float()


def explain_batch(
    classifier: Classifier,
    autoencoder: nn.Module,
    images: np.ndarray | torch.Tensor,
    target: torch.Tensor | np.ndarray | None = None,
    options: ShiftOptions = ShiftOptions(),
    maps: tuple[str, ...] = tuple(MAPS),
) -> Explanation:
    """Counterfactual frames, predictions and maps for ``images`` ((N, C, H, W) tensor or
    (N, H, W, C) array, in [0, 1]); ``target`` defaults to the class predicted on x. Runs on
    the classifier's device (the autoencoder is moved there); the results are numpy arrays."""
    device = classifier.device
    x = _as_images(images).to(device)
    shift = _Shift(classifier, autoencoder.to(device), options)
    with torch.no_grad():
        logits = classifier.logits(x * shift.scale + shift.offset).float()
    t = logits.argmax(dim=1) if target is None else torch.as_tensor(target, dtype=torch.int64, device=device)
    p_original = classifier.probabilities(logits).gather(1, t[:, None])[:, 0].cpu().numpy()
    z, g = shift.direction(x, t)
    with torch.no_grad():
        x0 = shift.decode(z)
        rec_logits = classifier.logits(x0 * shift.scale + shift.offset).float()
    p_start = classifier.probabilities(rec_logits).gather(1, t[:, None])[:, 0].cpu().numpy().astype(float)
    mass = x0.abs().reshape(len(x0), -1).sum(1).clamp_min(1e-12)

    def evaluate(indices: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = torch.from_numpy(indices).to(device)
        shifted, p = shift.run(z[idx], g[idx], torch.from_numpy(lam).float().to(device), t[idx])
        change = (shifted.float() - x0[idx]).abs().reshape(len(idx), -1).sum(1) / mass[idx]
        return p.cpu().numpy(), change.cpu().numpy()

    rule = options.rule
    low = search(rule, p_start, evaluate, sign=-1.0)
    high = search(rule, p_start, evaluate, sign=1.0) if rule.rise is not None else None
    lambda_high = high.bound if high is not None else np.zeros(len(z))
    lambdas = np.concatenate(
        [np.linspace(low.bound, 0.0, options.frames, axis=1)]
        + ([np.linspace(0.0, lambda_high, options.upper_frames + 1, axis=1)[:, 1:]] if high is not None else []),
        axis=1,
    )
    n, count = lambdas.shape
    repeat = torch.arange(n, device=device).repeat_interleave(count)
    lambda_all = torch.from_numpy(lambdas.reshape(-1)).float().to(device)
    frames, predictions = shift.run(z[repeat], g[repeat], lambda_all, t[repeat])
    frames = frames.float().reshape(n, count, *frames.shape[1:]).cpu().numpy()
    predictions = predictions.reshape(n, count).cpu().numpy()
    zero = options.frames - 1
    fall = p_start - predictions[:, 0]
    reached = fall > rule.drop
    if rule.floor is not None:
        reached |= predictions[:, 0] < rule.floor
    status = [UNCHANGED if f < options.min_change else REACHED if r else PARTIAL for f, r in zip(fall, reached)]
    return Explanation(
        target=t.cpu().numpy(),
        p_original=p_original,
        p_start=p_start,
        class_original=logits.argmax(dim=1).cpu().numpy(),
        class_reconstruction=rec_logits.argmax(dim=1).cpu().numpy(),
        lambda_low=low.bound,
        lambda_high=lambda_high,
        reason_low=low.reason,
        reason_high=high.reason if high is not None else [""] * n,
        lambdas=lambdas,
        frames=frames,
        predictions=predictions,
        zero=zero,
        maps={name: MAPS[name](frames, zero) for name in maps},
        status=status,
    )
