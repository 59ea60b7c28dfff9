"""Plug-ins for the labels that need neural taggers: gender, age and word stress.

The reference pipeline gets gender and age from a wav2vec2 age-gender model and stressed words
from a Whisper-based tagger (docs/paper.md §3); neither can be downloaded here, so none ships.
A tagger is any class with `fields` and `tag(clip, record) -> {field: value}`; name one on the
command line as `module:Class` (`python -m train.label all ... --tagger mypkg.taggers:AgeGender`).
Without a tagger a field comes from the input record when present, and is null otherwise:
never guessed.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from engine.audio import Clip

TAGGED_FIELDS = ("gender", "age_level", "stressed_words")
GENDERS = {"male": "Male", "m": "Male", "man": "Male", "female": "Female", "f": "Female",
           "woman": "Female", "child": "Child"}


class Tagger(Protocol):
    fields: tuple[str, ...]  # the record fields this tagger fills

    def tag(self, clip: Clip, record: dict[str, Any]) -> dict[str, Any]:
        """Values for `fields` (None where the tagger cannot tell)."""
        ...


def load_tagger(spec: str) -> Tagger:
    """Instantiate `module:Class`; raises ValueError with the reason when it cannot."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"a tagger is named module:Class, got {spec!r}")
    try:
        tagger = getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load tagger {spec}: {exc}") from None
    if not hasattr(tagger, "fields") or not callable(getattr(tagger, "tag", None)):
        raise ValueError(f"{spec} has no `fields` and `tag(clip, record)`")
    return tagger


def tag_fields(clip: Clip, record: dict[str, Any], taggers: list[Tagger]) -> dict[str, Any]:
    """gender, age_level and stressed_words: a tagger's value, else the record's, else None."""
    out: dict[str, Any] = {f: record.get(f) for f in TAGGED_FIELDS}
    if out["gender"] is not None:
        out["gender"] = GENDERS.get(str(out["gender"]).strip().lower(), out["gender"])
    for tagger in taggers:
        for field, value in tagger.tag(clip, record).items():
            if field in tagger.fields and value is not None:
                out[field] = value
    return out  # stressed_words: a list when known; null (not []) when nothing measured it
