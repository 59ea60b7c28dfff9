"""Training records: the one record type, JSONL reader and writer, and clip loader of train/.

    from train.records import load_clip, read_jsonl, JsonlWriter
    for record in read_jsonl("data/labelled.jsonl"):
        clip = load_clip(record, "data")          # audio_path resolved from the file's folder

A record is one JSON object per line in the EmotionCoT schema (docs/paper.md §2): `audio_path`,
`transcription`, `emotion`, the prosody labels, speaker traits and `cot_analysis`; any other field
(`dataset`, `id`, `prosody` measurements ...) is carried through untouched, so records stay plain
dicts and `Record` only documents them.

The path rule, the same for every step (label, data, sft, grpo_ptr, evaluate): `audio_path` is
absolute, or relative to the folder of the JSONL file that holds the record. A step that writes
records into another folder (train.label) rewrites relative paths with `rebase`, so its output
resolves from where it is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from engine.audio import Clip, load_audio

# Longest clip a training step reads. EmotionCoT's clips are utterances (seconds to ~30 s); the
# limit keeps a stray hour-long file from filling memory while leaving room for long read speech.
MAX_CLIP_SECONDS = 600.0

SCHEMA = ("audio_path", "transcription", "emotion", "pitch_level", "energy_level", "speed_level",
          "stressed_words", "intonation", "gender", "age_level", "cot_analysis")


class Record(TypedDict, total=False):
    audio_path: str  # absolute, or relative to the JSONL file's folder
    transcription: str | None  # what is said
    emotion: str | None  # the true emotion (any corpus's label; train.evaluate maps it)
    pitch_level: str | None  # low, normal, high (train.label calibrate)
    energy_level: str | None  # low, normal, high
    speed_level: str | None  # slow, normal, fast
    stressed_words: list[str] | None
    intonation: str | None  # rising, falling, rising-falling, falling-rising, flat, expressive ...
    gender: str | None  # Male, Female (Child)
    age_level: str | None  # Child, Teenager, Young Adult, Middle-aged, Elderly
    cot_analysis: str | None  # the reasoning to learn, 50-200 words
    dataset: str | None  # corpus name: calibration groups and label maps


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, one dict per non-blank line; a bad line raises ValueError
    naming the file and line."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {number}: not JSON ({exc.msg})") from None


class JsonlWriter:
    """Writes records one JSON line at a time, flushed, so an interrupted run keeps every line
    written (and a rerun can resume). `append=True` adds to an existing file."""

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w")  # closed by close() / the with block

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def audio_file(record: Mapping[str, Any], base_dir: str | os.PathLike) -> Path:
    """The record's audio file: `audio_path` as is when absolute, else under `base_dir` (the
    folder of the JSONL file the record came from)."""
    if not record.get("audio_path"):
        raise ValueError("the record has no audio_path")
    path = Path(record["audio_path"])
    return path if path.is_absolute() else Path(base_dir) / path


def load_clip(record: Mapping[str, Any], base_dir: str | os.PathLike,
              max_seconds: float = MAX_CLIP_SECONDS) -> Clip:
    """The record's audio as a Clip (engine.audio: 16 kHz mono); AudioError when unusable."""
    return load_audio(audio_file(record, base_dir), max_seconds=max_seconds)


def voice_type(record: Mapping[str, Any]) -> str:
    """The voice type whose pitch norms fit the record's speaker (engine.prosody.levels): its
    `gender` (Male / Female / Child) where known, else "auto"."""
    from engine.prosody.levels import VOICE_TYPES

    gender = str(record.get("gender") or "").strip().lower()
    return gender if gender in VOICE_TYPES else "auto"


def rebase(record: Mapping[str, Any], from_dir: str | os.PathLike,
           to_dir: str | os.PathLike) -> dict[str, Any]:
    """A copy of `record` whose relative `audio_path`, read from `from_dir`, resolves from
    `to_dir` instead (absolute paths are kept)."""
    out = dict(record)
    path = record.get("audio_path")
    if path and not Path(path).is_absolute():
        target = Path(os.path.abspath(Path(from_dir) / path))
        out["audio_path"] = os.path.relpath(target, os.path.abspath(to_dir))
    return out


# How common corpora's labels map to the nine (None: left out of the evaluation).
LABEL_MAPS: dict[str, dict[str, str | None]] = {
    # IEMOCAP: the usual merge of excited into happy; frustration and "other" have no class here.
    # Its codes and the full words releases write (never guessed through synonyms: "frustrated"
    # must not become angry)
    "iemocap": {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry",
                "sur": "surprise", "fea": "fear", "dis": "contempt", "fru": None, "oth": None,
                "xxx": None, "neutral": "neutral", "happy": "happy", "happiness": "happy",
                "excited": "happy", "excitement": "happy", "sadness": "sad", "angry": "angry",
                "anger": "angry", "surprise": "surprise", "surprised": "surprise", "fear": "fear",
                "fearful": "fear", "disgust": "contempt", "disgusted": "contempt",
                "frustrated": None, "frustration": None, "other": None},
    "meld": {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry",
             "disgust": "contempt", "surprise": "surprise", "fear": "fear"},
    # RAVDESS: the emotion field of the file name, or its word; calm counts as neutral
    "ravdess": {"01": "neutral", "02": "neutral", "03": "happy", "04": "sad", "05": "angry",
                "06": "fear", "07": "contempt", "08": "surprise", "calm": "neutral"},
    # SAVEE: the letter prefix of the file name
    "savee": {"n": "neutral", "h": "happy", "sa": "sad", "a": "angry", "d": "contempt",
              "su": "surprise", "f": "fear"},
}


def map_label(raw: str | None, dataset: str | None = None) -> str | None:
    """A corpus label as one of the nine (None when it has no counterpart): the one mapping SFT
    targets, GRPO-PTR's data and rewards, and the evaluation all use."""
    from engine.reasoning.parse import normalize_label
    from engine.reasoning.prompts import LABELS

    if raw is None:
        return None
    table = LABEL_MAPS.get((dataset or "").lower(), {})
    key = str(raw).strip().lower()
    if key in table:
        return table[key]
    if table and dataset and dataset.lower() == "iemocap":
        return None  # a code or word IEMOCAP has no class for here
    label = normalize_label(raw)
    return label if label in LABELS else None
