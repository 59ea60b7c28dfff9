"""Reading a YAML recipe into a training entry point's dataclass: unknown keys are errors, and
numbers are numbers (YAML 1.1 reads `1e-6` as a string unless it is written `1.0e-6`)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def load_recipe(cls: type[T], path: str | Path, **overrides: Any) -> T:
    """`cls(**recipe)` from the YAML (or JSON) file at `path`, `overrides` (not None) on top."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    types = {f.name: str(f.type) for f in fields(cls)}
    unknown = set(raw) - set(types)
    if unknown:
        raise ValueError(f"unknown recipe keys: {sorted(unknown)}")
    for key, value in raw.items():
        if isinstance(value, str) and types[key].startswith(("float", "int")):
            try:
                raw[key] = float(value) if types[key].startswith("float") else int(value)
            except ValueError:
                raise ValueError(f"recipe key {key} must be a number; got {value!r}") from None
    return cls(**raw)
