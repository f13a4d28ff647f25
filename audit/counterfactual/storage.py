"""Save and load autoencoders without unpickling code.

Our format: ``AE.pt`` holds only the ``state_dict`` (``torch.save``) and ``AE.json`` the
architecture's config and the training record; weights are read with
``torch.load(weights_only=True)``, so a pickled module is refused, never executed. Also accepted:
a TorchScript module with ``encode`` and ``decode`` methods (``@torch.jit.export``), or a pair of
ONNX files ``ENCODER.onnx,DECODER.onnx`` turned into torch modules by our ONNX interpreter
(``audit.models.onnx_graph.build_torch_twin``), so gradients flow through every kind.

Every autoencoder maps (N, C, H, W) images in [0, 1] to codes and back.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.counterfactual.autoencoder import AutoencoderConfig, ResNetAutoencoder
from audit.errors import AuditError, first_line

SCHEMA = "audit.autoencoder/1"


def config_path(path: Path) -> Path:
    """``ae.pt`` → ``ae.json``."""
    return Path(path).with_suffix(".json")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_autoencoder(model: ResNetAutoencoder, path: Path, training: dict[str, Any] | None = None) -> None:
    """Write ``path`` (state dict) and its JSON config, each atomically."""
    atomic_write(path, lambda f: torch.save(model.state_dict(), f))
    document = {"schema": SCHEMA, "architecture": "ResNetAutoencoder", "config": model.config.to_json(), "training": training or {}}
    atomic_write(config_path(path), lambda f: f.write(json.dumps(document, indent=2).encode()))


def read_config(path: Path) -> tuple[dict[str, Any], AutoencoderConfig]:
    """The JSON document next to ``path`` and its architecture; AuditError when it is unreadable,
    not UTF-8, of another schema, or its config is not a valid architecture (``AutoencoderConfig``)."""
    where = config_path(path)
    retrain = "re-run audit train-autoencoder"
    try:
        document = json.loads(where.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AuditError(f"{where}: autoencoder config is not UTF-8 JSON ({exc.reason} at byte {exc.start}); {retrain}") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise AuditError(f"{where}: unreadable autoencoder config ({first_line(exc)}); {retrain}") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA or document.get("architecture") != "ResNetAutoencoder":
        schema = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise AuditError(f"{where}: not an audit autoencoder config (schema {schema!r}); expected {SCHEMA}")
    try:
        return document, AutoencoderConfig.from_json(document.get("config"))
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{where}: invalid autoencoder config: {exc}; {retrain}") from exc


def load_state(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise AuditError(
            f"{path}: holds pickled Python objects, which are refused (they can run code); save "
            f"model.state_dict() instead, or a TorchScript module with encode/decode"
        ) from exc
    except Exception as exc:  # EOFError (empty file), RuntimeError, zip errors: not a torch.save file
        raise AuditError(f"{path}: cannot read weights ({first_line(exc)}); give a file written by audit train-autoencoder") from exc


def _ours(path: Path) -> ResNetAutoencoder:
    _, config = read_config(path)
    model = ResNetAutoencoder(config)
    state = load_state(path)
    try:
        model.load_state_dict(state)
    except Exception as exc:  # RuntimeError (keys, shapes), TypeError/AttributeError (not a dict)
        raise AuditError(f"{path}: weights do not match {config_path(path).name} ({first_line(exc)})") from exc
    return model


class ScriptedAutoencoder(nn.Module):
    """A user's TorchScript module seen through ``encode``/``decode``."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.module = module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.module.decode(z)


def _torchscript(path: Path) -> ScriptedAutoencoder:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        # Not TorchScript: a state dict without its config, or a pickle (refused by load_state).
        load_state(path)
        raise AuditError(
            f"{path}: neither TorchScript nor weights with a {config_path(path).name} config; "
            f"give a file written by audit train-autoencoder or a TorchScript module"
        ) from exc
    missing = [name for name in ("encode", "decode") if not hasattr(module, name)]
    if missing:
        raise AuditError(
            f"{path}: TorchScript module has no {' or '.join(missing)} method; export both with "
            f"@torch.jit.export (encode: images → codes, decode: codes → images)"
        )
    return ScriptedAutoencoder(module)


class OnnxAutoencoder(nn.Module):
    """Encoder and decoder ONNX graphs as differentiable torch twins."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return _first(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return _first(self.decoder(z))


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _onnx_twin(path: Path) -> nn.Module:
    import onnx

    from audit.models.onnx_graph import UnsupportedOperatorError, build_torch_twin

    if not path.is_file():
        raise AuditError(f"{path}: ONNX file not found")
    try:
        return build_torch_twin(onnx.load(str(path)))
    except UnsupportedOperatorError as exc:
        raise AuditError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise AuditError(f"{path}: cannot read the ONNX graph ({first_line(exc)})") from exc


def load_autoencoder(spec: str | Path) -> nn.Module:
    """Load ``AE.pt`` (+ ``AE.json``), a TorchScript file, or ``ENC.onnx,DEC.onnx``, in eval mode."""
    text = str(spec)
    if "," in text:
        parts = [Path(p.strip()) for p in text.split(",")]
        if len(parts) != 2 or any(p.suffix.lower() != ".onnx" for p in parts):
            raise AuditError(f"--autoencoder {text!r}: give ENCODER.onnx,DECODER.onnx (two ONNX files)")
        return OnnxAutoencoder(_onnx_twin(parts[0]), _onnx_twin(parts[1])).eval()
    path = Path(text)
    if not path.is_file():
        raise AuditError(f"{path}: autoencoder not found; train one with audit train-autoencoder")
    model = _ours(path) if config_path(path).is_file() and path.suffix != ".json" else _torchscript(path)
    return model.eval()


@torch.no_grad()
def check_autoencoder(autoencoder: nn.Module, shape: tuple[int, int, int], where: str) -> None:
    """Decode(encode(x)) must run on (2, *shape) images, return that shape, and be finite."""
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
    x = x.to(next(autoencoder.parameters(), x).device)
    try:
        out = autoencoder.decode(autoencoder.encode(x))
    except Exception as exc:
        raise AuditError(f"{where}: encode/decode fails on images of shape {tuple(x.shape)} ({first_line(exc)}); the autoencoder must take the classifier's input") from exc
    if tuple(out.shape) != tuple(x.shape):
        raise AuditError(
            f"{where}: decoded images have shape {tuple(out.shape)[1:]} but the classifier takes "
            f"{tuple(shape)}; train the autoencoder at the classifier's input size"
        )
    if not torch.isfinite(out).all():
        raise AuditError(f"{where}: decoding gives NaN or infinite pixels; retrain or check the autoencoder")
