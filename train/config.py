"""Training recipes: one validated base shared by `train.sft` and `train.grpo_ptr`.

    recipe = SFTRecipe.load("train/recipes/sft_prosody.yaml", max_steps=10)

A recipe is a YAML (or JSON) file whose keys are the fields of the entry point's dataclass. Every
value is checked against its field's type when the recipe is made, from a file or in code: an
unknown key, a value of the wrong type or outside its allowed set is a ValueError that names the
key (a mistyped `mode: qlroa` must not silently train LoRA). Numbers written as strings are read
as numbers (YAML 1.1 reads `1e-6` as a string unless it is written `1.0e-6`).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

MODES = ("full", "lora", "qlora")  # what trains: every weight of the parts, or LoRA adapters
PARTS = ("audio_encoder", "projector", "llm")  # the thinker's trainable parts (train.sft.part_of)

R = TypeVar("R", bound="BaseRecipe")


@dataclass
class BaseRecipe:
    model: str  # hub id or checkpoint directory of the starting point
    data: str  # labelled EmotionCoT-style JSON lines (train.label output; train.records)
    output_dir: str
    mode: str = "lora"  # one of MODES
    train_parts: list[str] = field(default_factory=lambda: ["llm"])  # any of PARTS
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    learning_rate: float = 1e-4
    max_steps: int = -1  # > 0: stop after this many optimiser steps
    logging_steps: int = 10
    save_steps: int = 500
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1 ...
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Checks beyond types; subclasses extend it (and call super())."""
        _one_of("mode", self.mode, MODES)
        for part in self.train_parts:
            _one_of("train_parts", part, PARTS)
        if not self.train_parts:
            raise ValueError(f"recipe key train_parts must name at least one of {', '.join(PARTS)}")
        for key in ("lora_r", "lora_alpha", "logging_steps", "save_steps"):
            _at_least(key, getattr(self, key), 1)
        _at_least("learning_rate", self.learning_rate, 0.0, strict=True)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"recipe key lora_dropout must be in [0, 1); got {self.lora_dropout!r}")

    @classmethod
    def load(cls: type[R], path: str | Path, **overrides: Any) -> R:
        """The recipe in the YAML (or JSON) file at `path`, `overrides` (those not None) on top."""
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a mapping of recipe keys to values")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys in {path}: {unknown}; known: {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in raw
                         and f.default is f.default_factory)  # both MISSING: required
        if missing:
            raise ValueError(f"recipe {path} lacks the required keys {missing}")
        return cls(**raw)


def _checked(key: str, value: Any, tp: Any) -> Any:
    """`value` converted to `tp` where that is lossless (int -> float, "1e-6" -> 1e-06), or a
    ValueError naming the key."""
    ok, converted = _convert(value, tp)
    if not ok:
        raise ValueError(f"recipe key {key} must be {_name(tp)}; got {value!r}")
    return converted


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            ok, converted = _convert(value, arm)
            if ok:
                return True, converted
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return False, value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        if tp is int:
            return float(value).is_integer(), int(value) if float(value).is_integer() else value
        return math.isfinite(value), float(value)  # NaN and infinity are not settings
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_convert(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False, value
        items = {k: _convert(v, args[1]) for k, v in value.items()}
        return all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    raise TypeError(f"recipe fields of type {tp} are not supported")


def _name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false",
             type(None): "null"}
    if tp in names:
        return names[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"a list of {_name(args[0])}"
    if origin is dict:
        return f"a mapping of names to {_name(args[1])}"
    return str(tp)


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"recipe key {key} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(key: str, value: float, low: float, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        raise ValueError(f"recipe key {key} must be {'>' if strict else '>='} {low:g}; got {value!r}")
