"""Reading checkpoints safely, matching their keys to an encoder strictly, fingerprinting weights.

Checkpoints are read with safetensors or `torch.load(weights_only=True)`, never raw pickle.
Strict means: every key the encoder has must be in the checkpoint with the same shape, and
every key left over is an error, except keys the spec names as another tower's
(`ignore_checkpoint_keys`). Errors list the missing and unexpected keys.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from progbench.errors import WeightsError

StateDict = dict[str, torch.Tensor]

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_SHOW = 12  # keys listed per kind in an error message


def read_state_dict(path: Path) -> StateDict:
    """A flat {name: tensor} dict from a safetensors or torch checkpoint file."""
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}", "Check the --weights path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path} cannot be read with torch.load(weights_only=True): it holds pickled Python "
            f"objects, not only tensors ({str(err).splitlines()[0]})",
            "Re-save it as a plain state dict (torch.save(model.state_dict(), f)) or as "
            "safetensors; progbench never unpickles arbitrary objects.",
        ) from err
    except Exception as err:  # corrupt or truncated files raise many kinds of errors
        raise WeightsError(f"{path} is not a readable checkpoint: {err}") from err
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> StateDict:
    # Training checkpoints often nest the weights under one key.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: entries that are not tensors: {bad[:_SHOW]}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def find_checkpoint(directory: Path, names: Iterable[str]) -> Path:
    """The first of `names` present in `directory`, else its only checkpoint file."""
    for n in names:
        if (directory / n).is_file():
            return directory / n
    found = sorted(p for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise WeightsError(
        f"{directory} has {'no' if not found else 'several'} checkpoint files"
        + (f" ({', '.join(p.name for p in found)})" if found else ""),
        f"Expected one of: {', '.join(names)}; or pass the checkpoint file itself as --weights.",
    )


def drop_prefixed(sd: StateDict, prefixes: Iterable[str]) -> StateDict:
    prefixes = tuple(prefixes)
    return {k: v for k, v in sd.items() if not (prefixes and k.startswith(prefixes))}


def take_prefixed(sd: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def key_report(missing: Iterable[str], unexpected: Iterable[str], mismatched: Iterable[str]) -> str:
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mismatched),
    ):
        keys = sorted(keys)
        if keys:
            more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            parts.append(f"{len(keys)} {label} keys: {', '.join(keys[:_SHOW])}{more}")
    return "; ".join(parts)


def load_strict(module: nn.Module, sd: StateDict, source: str) -> None:
    """Load `sd` into `module`, raising WeightsError that lists every key mismatch."""
    own = module.state_dict()
    # Checkpoints older than BatchNorm's step counter lack it; BatchNorm itself allows that.
    counters = {k for k in set(own) - set(sd) if k.rsplit(".", 1)[-1] == "num_batches_tracked"}
    missing = set(own) - set(sd) - counters
    unexpected = set(sd) - set(own)
    mismatched = {
        f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(own) & set(sd)
        if sd[k].shape != own[k].shape
    }
    if missing or unexpected or mismatched:
        raise WeightsError(
            f"{source} does not match the architecture: {key_report(missing, unexpected, mismatched)}",
            "Check that the checkpoint belongs to this backbone (see `progbench models`), or use "
            "--weights random for a dry run.",
        )
    module.load_state_dict(sd, strict=not counters)


# torchvision's own DenseNet loader renames keys of its old checkpoints the same way
# (torchvision.models.densenet._load_state_dict): 'norm.1' -> 'norm1', 'conv.2' -> 'conv2'.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def fix_torchvision_keys(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for k, v in sd.items():
        m = _DENSENET_OLD_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes): same weights, same string."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # buffer protocol: no copy
    return h.hexdigest()[:20]
