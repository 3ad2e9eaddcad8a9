"""Pretrained weights for machines without a network.

`progbench weights fetch` (run where there is a network) downloads each backbone's weights with
its library's own downloader into one folder, one sub-folder per backbone in the layout
`--weights PATH` reads, and records every file's sha256 and size in `weights.json`:

    DIR/weights.json
    DIR/resnet18/resnet18-f37072fd.pth
    DIR/dinov2-s/config.json, model.safetensors
    DIR/biomedclip/open_clip_config.json, open_clip_pytorch_model.bin
    DIR/medclip-r50/pytorch_model.bin

`load_backbone(..., "pretrained", weights_dir=DIR)` or $PROGBENCH_WEIGHTS_DIR then reads the local
copy and never touches the network. Without either, the default folder (<cache root>/weights)
is used when it holds the backbone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from progbench.atomic import atomic_write_json
from progbench.cache.paths import cache_root
from progbench.config import BackboneSpec
from progbench.errors import RegistryError, WeightsError
from progbench.models.registry import get_backbone_spec, list_backbones
from progbench.models.sources import network, source_for

WEIGHTS_DIR_ENV = "PROGBENCH_WEIGHTS_DIR"
MANIFEST = "weights.json"
FORMAT = 1
GROUPS = ("all", "cnn", "fm")

# A download function: writes `spec`'s pretrained weights into the existing folder it is given.
Fetcher = Callable[[BackboneSpec, Path], None]


def default_weights_dir() -> Path:
    """$PROGBENCH_WEIGHTS_DIR, else <cache root>/weights."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else cache_root() / "weights"


def expand_backbones(names: Iterable[str]) -> list[str]:
    """Registry names, with the groups `all`, `cnn` and `fm` (CNN or not, by `is_cnn`) expanded;
    in order, without repeats. Unknown names raise RegistryError."""
    out: list[str] = []
    for name in names:
        if name in GROUPS:
            members = [
                n
                for n in list_backbones()
                if name == "all" or get_backbone_spec(n).is_cnn == (name == "cnn")
            ]
        else:
            members = [get_backbone_spec(name).name]
        out += [n for n in members if n not in out]
    return out


# ------------------------------------------------------------------------------- weights.json


def read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """{backbone: entry} from root/weights.json; empty when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        entries = data["backbones"]
        if not isinstance(entries, dict):
            raise TypeError("`backbones` is not a mapping")
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(
            f"{path} is not a progbench weights manifest: {err}",
            "Restore it from the machine that fetched the weights, or fetch again with --force.",
        ) from err
    return entries


def _record(root: Path, name: str, entry: dict[str, Any]) -> None:
    with FileLock(str(root / f".{MANIFEST}.lock")):
        entries = read_manifest(root)
        entries[name] = entry
        atomic_write_json(root / MANIFEST, {"format": FORMAT, "backbones": entries})


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"sha256", "size"}} of every file under `folder` (dot-files excluded)."""
    return {
        f: {"sha256": hash_file(folder / f), "size": (folder / f).stat().st_size}
        for f in _files(folder)
    }


# ---------------------------------------------------------------------------- loading locally


def _missing(spec: BackboneSpec, root: Path) -> WeightsError:
    if spec.hub_id is None:
        hint = (
            f"{spec.name} has no pretrained weights to fetch (no hub_id in its YAML); use "
            "--weights random or --weights PATH."
        )
    else:
        hint = (
            f"On a machine with a network run `progbench weights fetch {spec.name} --to DIR`, "
            f"then copy the folder here: `rsync -a DIR/ {root}/` (it holds DIR/{spec.name} and "
            f"DIR/{MANIFEST}). `progbench weights ls {root}` lists what {root} holds."
        )
    return WeightsError(
        f"backbone {spec.name!r} is not in the weights folder {root} (no {root / spec.name})", hint
    )


def _check_sizes(root: Path, name: str) -> None:
    """A truncated or half-copied file fails here, cheaply; `weights ls` checks sha256 too."""
    entry = read_manifest(root).get(name)
    for rel, rec in (entry or {}).get("files", {}).items():
        path = root / name / rel
        size = path.stat().st_size if path.is_file() else None
        if size != rec["size"]:
            have = "is missing" if size is None else f"has {size} bytes"
            raise WeightsError(
                f"{path} {have}, but {root / MANIFEST} records {rec['size']} bytes: the copy "
                "is incomplete or changed",
                f"Copy the folder again, or fetch it again with `progbench weights fetch {name} "
                f"--to {root} --force`; `progbench weights ls {root}` checks every sha256.",
            )


def local_weights(spec: BackboneSpec, weights_dir: str | Path | None = None) -> Path | None:
    """The local folder `--weights pretrained` reads for `spec`, or None for the library's own
    pretrained path. `weights_dir`, else $PROGBENCH_WEIGHTS_DIR, must hold the backbone; the
    default folder is used only when it does."""
    named = weights_dir if weights_dir not in (None, "") else os.environ.get(WEIGHTS_DIR_ENV)
    if named:
        root = Path(named).expanduser()
        if not root.is_dir():
            raise WeightsError(
                f"weights folder {root} does not exist",
                f"Fetch into it with `progbench weights fetch {spec.name} --to {root}` on a "
                f"machine with a network and copy it here, or unset ${WEIGHTS_DIR_ENV}.",
            )
        if not (root / spec.name).is_dir():
            raise _missing(spec, root)
    else:
        root = cache_root() / "weights"
        if not (root / spec.name).is_dir():
            return None
    _check_sizes(root, spec.name)
    return root / spec.name


# ------------------------------------------------------------------------------------ fetching


@dataclass(frozen=True)
class FetchResult:
    backbone: str
    path: Path
    status: str  # "fetched" | "present" (already there and verified)
    files: int
    size: int


def _publish(tmp: Path, target: Path) -> None:
    """Move the finished folder into place; a replaced folder is removed only afterwards."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _download(spec: BackboneSpec, tmp: Path, fetcher: Fetcher) -> None:
    try:
        fetcher(spec, tmp)
    except WeightsError:
        raise
    except (OSError, RuntimeError, ValueError) as err:
        raise WeightsError(
            f"could not fetch {spec.name} ({spec.hub_id}): {err}",
            "Check the network and the hub id; rerun the same command to retry.",
        ) from err
    source_for(spec).locate(spec, tmp)  # the folder must be in the layout the loader reads


def _fetch_one(spec: BackboneSpec, root: Path, fetcher: Fetcher, force: bool) -> FetchResult:
    target = root / spec.name
    if target.exists() and not force:
        st = backbone_status(root, spec.name, read_manifest(root), verify=True)
        if st.state == "ok":
            return FetchResult(spec.name, target, "present", len(st.files), st.size)
        raise WeightsError(
            f"{target} exists but does not match {root / MANIFEST}: {'; '.join(st.problems)}",
            "Pass --force to fetch it again (the folder is replaced), or remove it.",
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=root))
    try:
        _download(spec, tmp, fetcher)
        files = file_records(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    entry = {
        "library": spec.library,
        "weights_format": spec.weights_format,
        "hub_id": spec.hub_id,
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    _record(root, spec.name, entry)
    size = sum(f["size"] for f in files.values())
    return FetchResult(spec.name, target, "fetched", len(files), size)


def _library_fetcher(spec: BackboneSpec, to_dir: Path) -> None:
    source_for(spec).fetch(spec, to_dir)


def fetch_weights(
    names: Iterable[str],
    to: str | Path | None = None,
    fetcher: Fetcher | None = None,
    force: bool = False,
    on_start: Callable[[str], None] | None = None,
) -> list[FetchResult]:
    """Fetch each backbone (or group: all, cnn, fm) into `to` (default: default_weights_dir()).
    `fetcher` replaces the libraries' downloaders (tests). A backbone already there and matching
    weights.json is kept; a different one is refused unless `force`."""
    if fetcher is None and network.offline_mode():
        raise WeightsError(
            "`progbench weights fetch` downloads weights, but HF_HUB_OFFLINE is set",
            "Run it on a machine with a network, without HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE.",
        )
    names = expand_backbones(names)  # unknown names fail before anything is written
    root = Path(to).expanduser() if to is not None else default_weights_dir()
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        if on_start is not None:
            on_start(name)
        with FileLock(str(root / f".{name}.lock")):
            results.append(
                _fetch_one(get_backbone_spec(name), root, fetcher or _library_fetcher, force)
            )
    return results


# ------------------------------------------------------------------------------------- listing


@dataclass
class WeightsStatus:
    backbone: str
    library: str
    path: Path
    present: bool
    state: str  # ok | missing | changed | unrecorded | unchecked (sizes match, sha256 not read)
    size: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel -> size, sha256, ok
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "library": self.library,
            "path": str(self.path),
            "present": self.present,
            "state": self.state,
            "size": self.size,
            "files": self.files,
            "problems": self.problems,
        }


def _library(name: str) -> str:
    try:
        return get_backbone_spec(name).library
    except RegistryError:  # a folder of a backbone this registry does not know
        return "?"


def _compare(folder: Path, recorded: dict[str, Any], verify: bool, st: WeightsStatus) -> None:
    for rel in _files(folder):
        size = (folder / rel).stat().st_size
        st.size += size
        rec = recorded.get(rel)
        info: dict[str, Any] = {"size": size, "recorded_size": rec and rec["size"]}
        if rec is None:
            st.problems.append(f"{rel}: not in {MANIFEST}")
        elif size != rec["size"]:
            st.problems.append(f"{rel}: {size} bytes, {MANIFEST} records {rec['size']}")
        elif verify:
            info["sha256"] = hash_file(folder / rel)
            if info["sha256"] != rec["sha256"]:
                st.problems.append(f"{rel}: sha256 differs from {MANIFEST}")
        st.files[rel] = info
    st.problems += [f"{rel}: missing" for rel in sorted(set(recorded) - set(st.files))]


def backbone_status(
    root: Path, name: str, manifest: dict[str, dict[str, Any]], verify: bool = True
) -> WeightsStatus:
    folder = root / name
    st = WeightsStatus(name, _library(name), folder, folder.is_dir(), "missing")
    entry = manifest.get(name)
    if not st.present:
        if entry is not None:
            st.problems.append(f"recorded in {MANIFEST}, but the folder is missing")
        return st
    if entry is None:
        st.state = "unrecorded"
        st.size = sum((folder / f).stat().st_size for f in _files(folder))
        st.problems.append(f"not in {MANIFEST} (copied by hand?): fetch it with --force")
        return st
    _compare(folder, entry.get("files", {}), verify, st)
    st.state = "changed" if st.problems else "ok" if verify else "unchecked"
    return st


def weights_status(root: str | Path | None = None, verify: bool = True) -> list[WeightsStatus]:
    """Every full-size backbone of the registry, and whatever else the folder holds or records."""
    root = Path(root).expanduser() if root is not None else default_weights_dir()
    manifest = read_manifest(root) if root.is_dir() else {}
    names = list_backbones()
    extra = set(manifest)
    if root.is_dir():
        extra |= {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    names += sorted(extra - set(names))
    return [backbone_status(root, n, manifest, verify) for n in names]
