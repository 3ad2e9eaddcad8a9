"""One registry for every config folder: `Registry(folder, env_var, schema)`.

A registry is a built-in folder of `progbench/configs/` plus every folder named in its
environment variable (os.pathsep-separated; none for sweeps and datasets). Each `<name>.yaml`
is one entry; a name defined in two folders is refused. `load(name)` reads and validates one
entry with the schema (errors name the file), cached by the file's identity (path, mtime,
size), so an edited file is read again. progbench.models.registry builds the backbone,
strategy and training registries on it (one fingerprint over all three); probes, sweeps and
datasets use it directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from progbench.config.base import parse_model, read_yaml
from progbench.errors import ConfigError, ProgbenchError, RegistryError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
S = TypeVar("S", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)
Stamp = tuple[tuple[str, int, int], ...]

__all__ = ["CONFIGS_DIR", "Registry", "Stamp", "stamp"]


def stamp(files: list[Path]) -> Stamp:
    """The files' identity: path, mtime and size."""
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Registry(Generic[S]):
    """The entries of one config folder (and its environment variable's folders)."""

    def __init__(
        self,
        folder: Path,
        env_var: str | None,
        schema: type[S],
        *,
        label: str,
        plural: str | None = None,
        hint: str = "",
        error: type[ProgbenchError] = RegistryError,
        unknown_hint: Callable[[list[str]], str] | None = None,
    ) -> None:
        self.folder = folder
        self.env_var = env_var
        self.schema = schema
        self.label = label  # in messages: "backbone", "probe preset"
        self.plural = plural or f"{label}s"
        self.hint = hint  # where the schema is documented
        self.error = error
        self._unknown_hint = unknown_hint
        self._cache: dict[tuple[type, str, int, int], Any] = {}

    def folders(self) -> list[Path]:
        """The built-in folder, then the environment variable's, each checked to exist."""
        if self.env_var is None:
            return [self.folder]
        raw = os.environ.get(self.env_var, "").split(os.pathsep)
        extra = [Path(p).expanduser() for p in raw if p]
        for d in extra:
            if not d.is_dir():
                raise self.error(
                    f"${self.env_var} names {d}, which is not a directory", "Fix the variable."
                )
        return [self.folder, *extra]

    def files(self) -> list[Path]:
        """Every `*.yaml` of the folders, each folder's sorted by name."""
        return [f for d in self.folders() for f in sorted(d.glob("*.yaml"))]

    def paths(self) -> dict[str, Path]:
        """Name (the file's stem) -> file; a name defined twice is refused."""
        out: dict[str, Path] = {}
        for f in self.files():
            if f.stem in out:
                raise self.error(
                    f"{self.label} {f.stem!r} is defined twice: {out[f.stem]} and {f}",
                    "Rename or remove one of them.",
                )
            out[f.stem] = f
        return out

    def names(self) -> list[str]:
        return sorted(self.paths())

    def stamp(self) -> Stamp:
        return stamp(self.files())

    def read(self, path: Path) -> dict[str, Any]:
        """One file's mapping, its `name` checked against the file's name."""
        try:
            data = read_yaml(path)
        except ConfigError as err:
            raise self.error(err.message, self.hint or err.hint) from err
        name = data.get("name")
        if name != path.stem:
            raise self.error(
                f"{path}: `name` is {name!r} but the file is named {path.name}",
                f"Name the file <name>.yaml, here {name}.yaml, or set `name: {path.stem}`.",
            )
        return data

    def parse(
        self, data: dict[str, Any], source: Path, schema: type[BaseModel] | None = None
    ) -> Any:
        """Validate one entry's mapping; errors name the file."""
        try:
            parsed = parse_model(schema or self.schema, data, str(source))
        except ConfigError as err:
            raise self.error(err.message, self.hint or err.hint) from err
        return parsed

    def unknown(self, name: str, known: list[str] | None = None) -> ProgbenchError:
        names = self.names() if known is None else known
        if self._unknown_hint is not None:
            hint = self._unknown_hint(names)
        else:
            hint = f"Known {self.plural}: {', '.join(names)}."
            if self.env_var is not None:
                hint += f" To add one, put a <name>.yaml in a folder named by ${self.env_var}."
        return self.error(f"unknown {self.label} {name!r}", hint)

    def path(self, name: str) -> Path:
        paths = self.paths()
        if name not in paths:
            raise self.unknown(name, sorted(paths))
        return paths[name]

    def load(self, name: str) -> S:
        """One entry, validated with the schema, cached by the file's identity."""
        return self.load_as(name, self.schema)

    def load_as(self, name: str, schema: type[T]) -> T:
        """One entry validated with another schema (e.g. a subclass of the registry's)."""
        path = self.path(name)
        st = path.stat()
        key = (schema, str(path), st.st_mtime_ns, st.st_size)
        if key not in self._cache:
            self._cache[key] = self.parse(self.read(path), path, schema)
        loaded: T = self._cache[key]
        return loaded
