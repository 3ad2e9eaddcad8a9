"""Which settings make a result: one declaration per field, and every key derived from them.

Each field of a keyed schema (a backbone, a strategy or probe preset, the streamed trainer's
options) carries one marker in its annotation, `Annotated[T, Identity(...)]` or
`Annotated[T, Recorded(...)]`, on pydantic models and dataclasses alike:

- `Identity`: part of the identity (the key) of what it makes. `part` names the one key that
  takes it when a schema feeds several keys (a backbone: `feature` for the feature definition,
  `transform` for the input transform, `weights` for what the weights fingerprint covers,
  `adapters` for where adapters go); `later` marks a field added after results were keyed, left
  out while at its default so that older results keep their keys; `only_if` a field that
  matters only when other fields hold given values (Adam's settings of a probe); `via` a field
  whose effect enters the key as another field's resolved value (`lr_head` -> `head_lr_grid`).
- `Recorded`: written beside the result, never in a key (descriptions, notes, display order,
  where files go, devices, library-derived counts); `why` says so.

Identity dicts are built by `identity_of`, never listed by hand, and `undeclared` names a field
with no marker (tests/test_keys.py fails for one). docs/DESIGN_NOTES.md, 14.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python


@dataclass(frozen=True)
class Identity:
    """Part of a result's identity (see the module docstring for the options)."""

    part: str | None = None
    later: bool = False
    only_if: tuple[tuple[str, Any], ...] = ()
    via: str | None = None


@dataclass(frozen=True)
class Recorded:
    """Recorded beside a result, never part of its key."""

    why: str = ""


IDENTITY = Identity()
DESCRIPTIVE = Recorded("descriptive text or display order: never in a key")
Marker = Identity | Recorded


def _fields(cls: type) -> dict[str, tuple[Any, ...]]:
    """Each field's annotation metadata, in declaration order."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: tuple(f.metadata) for name, f in cls.model_fields.items()}
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        return {
            f.name: tuple(getattr(hints[f.name], "__metadata__", ()))
            for f in dataclasses.fields(cls)
        }
    raise TypeError(f"{cls!r} is neither a pydantic model nor a dataclass")


_DECLARATIONS: dict[type, dict[str, Marker | None]] = {}  # a class's fields never change


def declarations(cls: type) -> dict[str, Marker | None]:
    """Each field's marker (None: undeclared). Two markers on one field are an error."""
    if cls in _DECLARATIONS:
        return _DECLARATIONS[cls]
    out: dict[str, Marker | None] = {}
    for name, meta in _fields(cls).items():
        found = [m for m in meta if isinstance(m, Identity | Recorded)]
        if len(found) > 1:
            raise TypeError(f"{cls.__name__}.{name} is declared twice: {found}")
        out[name] = found[0] if found else None
    _DECLARATIONS[cls] = out
    return out


def undeclared(cls: type) -> list[str]:
    """Fields of `cls` declared neither identity nor recorded-only."""
    return [name for name, m in declarations(cls).items() if m is None]


def identity_fields(cls: type, part: str | None = None) -> list[str]:
    """The identity fields of `cls` (of one `part`, when given), in declaration order."""
    return [
        name
        for name, m in declarations(cls).items()
        if isinstance(m, Identity) and (part is None or m.part == part)
    ]


def _default(obj: Any, name: str) -> Any:
    cls = type(obj)
    if isinstance(obj, BaseModel):
        return cls.model_fields[name].get_default(call_default_factory=True)
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _value(v: Any) -> Any:
    """A JSON value; a nested declared model contributes its own identity only."""
    if isinstance(v, BaseModel) and all(m is not None for m in declarations(type(v)).values()):
        return identity_of(v)
    if isinstance(v, BaseModel):
        raise TypeError(f"{type(v).__name__} enters a key but declares no identity fields")
    return to_jsonable_python(v)


def identity_of(
    obj: object, part: str | None = None, resolved: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The identity of `obj` as a JSON-able dict, built from its fields' declarations.

    `part`: only the fields of that part (None: the fields declared without a part).
    `resolved`: values that replace a field's own (the value in effect, e.g. the strategy's lr
    when the option is None); a name that is not such a field is an error.
    """
    decl = declarations(type(obj))
    missing = [n for n, m in decl.items() if m is None]
    if missing:
        raise TypeError(f"{type(obj).__name__}: undeclared field(s) {missing} (config.keys)")
    resolved = dict(resolved or {})
    wrong = sorted(n for n in resolved if not isinstance(decl.get(n), Identity))
    if wrong:
        raise KeyError(f"{type(obj).__name__}: resolved value(s) for non-identity {wrong}")
    out: dict[str, Any] = {}
    for name, m in decl.items():
        if not isinstance(m, Identity) or m.part != part or m.via is not None:
            continue
        if any(getattr(obj, f) != v for f, v in m.only_if):
            resolved.pop(name, None)
            continue
        value = resolved.pop(name) if name in resolved else getattr(obj, name)
        if m.later and value == _default(obj, name):
            continue
        out[name] = _value(value)
    if resolved:
        raise KeyError(f"{type(obj).__name__}: resolved value(s) {sorted(resolved)} not of {part}")
    return out
