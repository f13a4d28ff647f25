"""Training (reconstruction good enough for the classifier, deterministic resume), storage round
trips, refusal of pickles, TorchScript and ONNX autoencoders, and bad autoencoders."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from torch import nn

from audit.counterfactual.autoencoder import AutoencoderConfig, ResNetAutoencoder
from audit.counterfactual.storage import check_autoencoder, config_path, load_autoencoder, save_autoencoder
from audit.counterfactual.training import TrainConfig, checkpoint_path, train_autoencoder
from audit.data.synthetic import generate_split, make_synthetic
from audit.errors import AuditError

SHAPE = (1, 28, 28)


def test_biased_accuracy_on_reconstructions_stays_close(autoencoder, classifiers):
    # Held-out images with the training box logic, where the biased model is right (accuracy 1.0).
    held = generate_split("train", 128, seed=11)
    x = torch.from_numpy(held.images[:, None])
    with torch.no_grad():
        reconstruction = autoencoder.decode(autoencoder.encode(x))
    model = classifiers["biased"]
    original = float((model.logits(x).argmax(1).numpy() == held.labels).mean())
    reconstructed = float((model.logits(reconstruction).argmax(1).numpy() == held.labels).mean())
    assert original == 1.0 and reconstructed >= 0.95


def test_training_writes_config_and_resumes_deterministically(tmp_path):
    root = make_synthetic(tmp_path / "data", seed=1, n_train=24, n_valid=2, n_test=2) / "train" / "images"
    small = dict(widths=(4, 8), bottleneck=2, batch_size=8, seed=3)
    straight = tmp_path / "a" / "ae.pt"
    full = train_autoencoder(root, straight, TrainConfig(epochs=3, **small), progress=False)
    resumed = tmp_path / "b" / "ae.pt"
    train_autoencoder(root, resumed, TrainConfig(epochs=2, **small), progress=False)
    assert checkpoint_path(resumed).is_file()
    again = train_autoencoder(root, resumed, TrainConfig(epochs=3, **small), resume=True, progress=False)
    assert again.history == full.history and len(full.history) == 3
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    document = json.loads(config_path(straight).read_text())
    assert document["config"] == {"channels": 1, "height": 28, "width": 28, "bottleneck": 2, "widths": [4, 8]}
    assert document["training"]["epoch"] == full.best_epoch
    with pytest.raises(AuditError, match="already exists"):
        train_autoencoder(root, straight, TrainConfig(epochs=1, **small), progress=False)


def test_early_stop_on_the_validation_loss(tmp_path):
    root = make_synthetic(tmp_path / "data", seed=1, n_train=16, n_valid=2, n_test=2) / "train" / "images"
    result = train_autoencoder(root, tmp_path / "ae.pt", TrainConfig(epochs=50, lr=1e-6, patience=1, widths=(4,), bottleneck=1, batch_size=8), progress=False)
    assert result.stopped_early and result.epochs_run < 50
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)


def test_round_trip_and_pickles_refused(tmp_path):
    torch.manual_seed(0)
    model = ResNetAutoencoder(AutoencoderConfig(*SHAPE, bottleneck=2, widths=(4, 8))).eval()
    path = tmp_path / "ae.pt"
    save_autoencoder(model, path)
    loaded = load_autoencoder(path)
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x)), model(x))
    pickled = tmp_path / "pickled.pt"
    torch.save(model, pickled)  # a whole module: unpickling it would run code
    with pytest.raises(AuditError, match="pickled"):
        load_autoencoder(pickled)
    shutil.copy(config_path(path), config_path(pickled))
    with pytest.raises(AuditError, match="pickled"):
        load_autoencoder(pickled)


class Scripted(nn.Module):
    def __init__(self, out: int = 28, nan: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.out = out
        self.nan = nan

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(nn.functional.interpolate(z.mean(1, keepdim=True), size=(self.out, self.out)))
        return x * float("nan") if self.nan else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class NoDecode(nn.Module):
    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_torchscript_with_encode_and_decode_is_accepted(tmp_path):
    path = tmp_path / "user.pt"
    torch.jit.script(Scripted()).save(str(path))
    autoencoder = load_autoencoder(path)
    check_autoencoder(autoencoder, SHAPE, str(path))
    z = autoencoder.encode(torch.rand(2, *SHAPE)).requires_grad_(True)
    (g,) = torch.autograd.grad(autoencoder.decode(z).sum(), z)
    assert g.shape == z.shape and g.abs().sum() > 0


@pytest.mark.parametrize(
    "module, message",
    [(NoDecode(), "no decode method"), (Scripted(out=14), "decoded images have shape"), (Scripted(nan=True), "NaN")],
)
def test_bad_autoencoders(tmp_path, module, message):
    path = tmp_path / "bad.pt"
    torch.jit.script(module).save(str(path))
    with pytest.raises(AuditError, match=message):
        check_autoencoder(load_autoencoder(path), SHAPE, str(path))


def test_onnx_encoder_decoder_pair(tmp_path):
    torch.manual_seed(0)
    model = ResNetAutoencoder(AutoencoderConfig(*SHAPE, bottleneck=2, widths=(4, 8))).eval()

    class Part(nn.Module):
        def __init__(self, fn) -> None:
            super().__init__()
            self.model, self.fn = model, fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(self.model, self.fn)(x)

    paths = []
    for fn, example in (("encode", torch.rand(2, *SHAPE)), ("decode", torch.rand(2, 2, 7, 7))):
        paths.append(tmp_path / f"{fn}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Part(fn).eval(), (example,), str(paths[-1]), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    pair = load_autoencoder(f"{paths[0]},{paths[1]}")
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(pair.decode(pair.encode(x)), model(x), atol=1e-5)
    with pytest.raises(AuditError, match="ENCODER.onnx,DECODER.onnx"):
        load_autoencoder(f"{paths[0]},{paths[1]},{paths[1]}")
