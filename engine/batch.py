"""A whole class at once: many clips (or zips of them) -> one row of measures per clip, and a CSV.

    from engine.batch import Limits, analyse, collect, failure_row, to_csv
    items, failed = collect(["class.zip", "extra.wav"], workdir)   # BatchError: over the upload limit
    rows, more_failed = analyse(items, voice="auto", progress=lambda done, total, name: ...)
    to_csv(rows + [failure_row(f) for f in failed + more_failed], workdir / "class.csv")  # header COLUMNS

A clip that cannot be used never stops the batch: it becomes a `Failure` with a reason a teacher can
act on, and the rest go on. Zips are opened defensively (`collect`):
- Paths: no entry's name becomes a path. Each audio entry is written as `NNNN_<safe basename>` into
  a fresh folder made for its archive under `workdir`: subfolders are flattened, nothing can land
  outside. Names that try to leave the archive (a `..` component, an absolute path, a drive letter)
  are refused with a Failure, not flattened: honest archives never hold them. Symbolic links are
  refused; folders, `__MACOSX/`, hidden files (`.DS_Store`, `._x.wav`), `Thumbs.db` and
  `desktop.ini` are skipped silently; other non-audio entries are listed.
- Zip bombs: before anything is unpacked, an archive is refused whole when its directory is larger
  than `max_entries` records need or holds more entries, when an audio entry declares a compression
  ratio over `max_ratio`, or when its audio declares more than the batch's unpack budget left
  (`max_unzipped_bytes`). Declared sizes can lie, so the bytes read are bounded too (`bounded_copy`:
  never more than the entry declared nor `max_ratio` times its compressed size); an entry caught
  lying is not kept (zipfile's CRC check fails it as damaged, or `bounded_copy` refuses the archive
  and what it wrote is deleted).
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from engine.audio import ACCEPTED, MAX_FILE_BYTES, MAX_SECONDS, AudioError, load_audio
from engine.prosody.analysis import ProsodyReport, analyze
from engine.prosody.levels import assume_voice
from engine.reasoning.prompts import LABEL_SPELLINGS, LABELS

MIB = 1024 * 1024
# Clips per batch: a large class's takes, and a table a teacher can still read. Not a CPU bound: a
# 1-s clip takes ~5 ms to load and analyse here, a 3.6 s real one ~16 ms, a 120 s one ~0.4 s.
MAX_CLIPS = 200
MAX_BATCH_BYTES = 50 * MIB  # uploaded per batch (files + zips as uploaded): the app's --max-file-mb
# Unpack budget: audio deflates little (WAV 1.5-2.3x, the quiet RAVDESS clips at most 4.1x, on the
# 30 real development clips; MP3/FLAC/Opus ~1x), so a zip within the upload limit holds under 5x its
# size; 8x leaves a margin and bounds the disk one batch can fill (400 MiB by default).
UNZIP_FACTOR = 8
MAX_UNZIPPED_BYTES = UNZIP_FACTOR * MAX_BATCH_BYTES
# Compression ratio per entry: real recordings stay under ~5x; 3 s of speech followed by 20 s or 60 s
# of digital silence deflate 11x or 30x (measured here); deflate's ceiling, a bomb of zeros, ~1030x.
# Entries under RATIO_GRACE_BYTES are exempt: whatever their ratio, they cannot fill a disk.
MAX_RATIO = 50.0
RATIO_GRACE_BYTES = 1 * MIB
# Entries per archive: a Mac's zip holds each clip twice (`__MACOSX/._x`) plus folders: 5 per clip.
# Each record costs memory when the directory is read, so the directory's own size is checked first
# (a real record is 46 bytes + name + extras, well under DIRECTORY_BYTES_PER_ENTRY).
ENTRIES_PER_CLIP = 5
MAX_ENTRIES = ENTRIES_PER_CLIP * MAX_CLIPS
DIRECTORY_BYTES_PER_ENTRY = 1024
CHUNK_BYTES = 1 * MIB  # unpacking reads this much at a time
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac",
                            ".mp4", ".webm", ".weba", ".mka", ".aiff", ".aif"})
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})  # Windows folder files, skipped like __MACOSX


class BatchError(ValueError):
    """The batch as a whole is refused (before any work); the message names the limit and its flag."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one batch; the unpack budget and entry count follow the upload and clip limits
    unless given (so raising --batch-max-mb or --batch-max-clips raises them too)."""

    max_clips: int = MAX_CLIPS
    max_bytes: int = MAX_BATCH_BYTES
    max_seconds: float = MAX_SECONDS  # per clip, as the app's --max-seconds
    max_unzipped_bytes: int | None = None  # None: UNZIP_FACTOR x max_bytes
    max_ratio: float = MAX_RATIO
    max_entries: int | None = None  # None: ENTRIES_PER_CLIP x max_clips

    def __post_init__(self) -> None:
        if self.max_unzipped_bytes is None:
            object.__setattr__(self, "max_unzipped_bytes", UNZIP_FACTOR * self.max_bytes)
        if self.max_entries is None:
            object.__setattr__(self, "max_entries", ENTRIES_PER_CLIP * self.max_clips)


@dataclass(frozen=True)
class Item:
    name: str  # display name: "anna.wav", or "class.zip/group1/anna_angry.wav"
    path: Path  # a readable file on disk


@dataclass(frozen=True)
class Failure:
    name: str  # display name, as Item's
    reason: str  # what was wrong, in words a user can act on


class _Refused(Exception):
    """An archive refused whole (its reason)."""


def collect(paths: Sequence[str | Path], workdir: Path,
            limits: Limits = Limits()) -> tuple[list[Item], list[Failure]]:
    """Expand uploads into clips to analyse (module docstring): plain files stay as they are, zips
    are unpacked into `workdir`. The first `max_clips` are kept, the rest listed as Failures.
    Raises BatchError when the uploads together exceed `max_bytes`, before anything is read."""
    paths = [Path(p) for p in paths]
    total = sum(p.stat().st_size for p in paths if p.is_file())
    if total > limits.max_bytes:
        raise BatchError(f"the upload is {total / MIB:.1f} MiB; a batch may be at most "
                         f"{limits.max_bytes / MIB:g} MiB of files and zips as uploaded (split it, "
                         "or raise the limit with --batch-max-mb)")
    items, failed, seen = [], [], set()
    budget = limits.max_unzipped_bytes  # bytes the batch may still unpack
    for path in paths:
        if not path.is_file():
            failed.append(Failure(path.name, "file not found (the upload did not arrive; try again)"))
        elif path.suffix.lower() != ".zip":
            if len(items) < limits.max_clips:
                items.append(Item(_unique(path.name, seen), path))
            else:
                failed.append(_over(path.name, limits))
        else:
            try:
                found, bad, used = _unzip(path, Path(workdir), limits, len(items), budget, seen)
            except _Refused as refused:
                failed.append(Failure(path.name, str(refused)))
                continue
            items.extend(found)
            failed.extend(bad)
            budget -= used
    return items, failed


def _over(name: str, limits: Limits) -> Failure:
    return Failure(name, f"not analysed: a batch takes at most {limits.max_clips} clips (analyse "
                         "the rest separately, or raise the limit with --batch-max-clips)")


def _unique(name: str, seen: set[str]) -> str:
    """`name`, or "stem (2).wav", "stem (3).wav" ... when already taken."""
    candidate, n = name, 1
    while candidate in seen:
        n += 1
        p = PurePosixPath(name)
        candidate = str(p.with_name(f"{p.stem} ({n}){p.suffix}"))
    seen.add(candidate)
    return candidate


def _unzip(path: Path, workdir: Path, limits: Limits, kept: int, budget: int,
           seen: set[str]) -> tuple[list[Item], list[Failure], int]:
    """The audio entries of one archive, written into a fresh folder under `workdir` while the
    batch holds fewer than max_clips (`kept` so far); also the bytes unpacked, out of `budget`."""
    _check_directory(path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise _Refused(f"not a readable zip archive ({exc}); re-create it, or upload the clips "
                       "themselves") from None
    with archive:
        if len(archive.infolist()) > limits.max_entries:
            raise _Refused(f"holds {len(archive.infolist())} entries; an archive may hold at most "
                           f"{limits.max_entries} (raise --batch-max-clips, or split it)")
        audio, failed = [], []
        for info in archive.infolist():
            shown, problem = _screen(path.name, info)
            if problem is None:
                audio.append((info, shown))
            elif problem:
                failed.append(Failure(shown, problem))
        for info, shown in audio:  # one bomb makes the whole archive hostile
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_GRACE_BYTES and ratio > limits.max_ratio:
                raise _Refused(f"refused as a zip bomb: {shown} would expand {ratio:.0f} times "
                               f"({info.file_size / MIB:.0f} MiB), and real recordings compress at "
                               f"most {limits.max_ratio:g} times; nothing was unpacked")
        slots = max(limits.max_clips - kept, 0)
        declared = sum(info.file_size for info, _ in audio[:slots])
        if declared > budget:
            raise _Refused(f"refused: it unpacks to {declared / MIB:.0f} MiB, over the "
                           f"{budget / MIB:.0f} MiB left of the {limits.max_unzipped_bytes / MIB:.0f}"
                           f" MiB a batch may unpack ({UNZIP_FACTOR}x --batch-max-mb); nothing was unpacked")
        workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="zip-", dir=workdir))
        items, used = [], 0
        try:
            for k, (info, shown) in enumerate(audio):
                if len(items) >= slots:  # over the clip limit: listed, not unpacked
                    failed.append(_over(shown, limits))
                    continue
                if info.file_size > budget - used:  # only after a damaged entry freed a slot
                    failed.append(Failure(shown, "not unpacked: the batch's unpack budget is spent"))
                    continue
                target = folder / f"{k + 1:04d}_{_safe(PurePosixPath(shown).name)}"
                limit = min(info.file_size, max(int(info.compress_size * limits.max_ratio),
                                                RATIO_GRACE_BYTES))
                try:
                    with archive.open(info) as src, open(target, "xb") as dst:
                        used += bounded_copy(src, dst, limit, shown)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                        RuntimeError) as exc:
                    target.unlink(missing_ok=True)
                    failed.append(Failure(shown, (
                        f"compressed in a way that cannot be read here ({exc}); re-create the zip with "
                        "ordinary compression") if isinstance(exc, NotImplementedError) else
                        f"damaged in the archive ({exc}); re-create the zip"))
                    continue
                items.append(Item(_unique(shown, seen), target))
        except _Refused:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return items, failed, used


def _screen(archive: str, info: zipfile.ZipInfo) -> tuple[str, str | None]:
    """An entry's display name, and why it is not unpacked: "" to skip it silently, None for audio."""
    name = info.filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    shown, suffix = f"{archive}/{'/'.join(parts)}", PurePosixPath(name).suffix.lower()
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
        return shown, "refused: its path leaves the archive (.., an absolute path or a drive letter)"
    if info.is_dir() or not parts or parts[-1].lower() in JUNK_NAMES \
            or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return shown, ""  # folders, and what Macs and Windows add
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return shown, "refused: a symbolic link, not a recording"
    if suffix == ".zip":
        return shown, "a zip inside the zip is not opened; upload it on its own"
    if suffix not in AUDIO_SUFFIXES:
        return shown, f"not an audio file (accepted: {ACCEPTED})"
    if info.flag_bits & 0x1:
        return shown, "password-protected in the archive; zip it without a password"
    if info.file_size > MAX_FILE_BYTES:
        return shown, f"is {info.file_size / MIB:.0f} MiB; files up to {MAX_FILE_BYTES // MIB} MiB are accepted"
    return shown, None


def bounded_copy(src: BinaryIO, dst: BinaryIO, limit: int, name: str = "an entry") -> int:
    """Copy `src` to `dst` in chunks, refusing (`_Refused`) as soon as more than `limit` bytes
    arrive: what bounds an archive whose declared sizes lie. Returns the bytes copied."""
    done = 0
    while chunk := src.read(min(CHUNK_BYTES, limit + 1 - done)):
        done += len(chunk)
        if done > limit:
            raise _Refused(f"refused: {name} holds more than its declared size or the "
                           f"{limit / MIB:.1f} MiB it may unpack to (the archive lies about its "
                           "sizes, as zip bombs do); nothing was kept")
        dst.write(chunk)
    return done


def _check_directory(path: Path, limits: Limits) -> None:
    """Refuse, from the end-of-directory record alone, an archive whose directory is too large to
    read safely (a zip of millions of tiny entries is a bomb of memory)."""
    with open(path, "rb") as f:
        f.seek(max(os.path.getsize(path) - 22 - 65535, 0))  # the record, 22 bytes + a comment
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise _Refused("not a readable zip archive (no end of its directory); re-create it, or "
                       "upload the clips themselves")
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries > limits.max_entries or directory_bytes > limits.max_entries * DIRECTORY_BYTES_PER_ENTRY:
        raise _Refused(f"its directory declares {entries} entries ({directory_bytes} bytes); an "
                       f"archive may hold at most {limits.max_entries} (raise --batch-max-clips, or split it)")


def _safe(base: str) -> str:
    """A file name that is only ASCII letters, digits, '.', '_' and '-', with its suffix kept."""
    p = PurePosixPath(base)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", p.stem)[:80] or "clip"
    return stem + re.sub(r"[^a-z0-9.]", "", p.suffix.lower())


# Emotion tags from file names: each label's spellings (prompts.LABEL_SPELLINGS) and common short
# forms (CREMA-D's ANG DIS FEA HAP NEU SAD, IEMOCAP's ang hap neu sad fea dis sur) and inflections.
_EXTRA = {"neutral": ("neu", "calm"), "happy": ("hap", "happiness", "joy", "joyful"),
          "sad": ("sadness",), "angry": ("ang", "anger"), "contempt": ("dis", "disgusted", "contemptuous"),
          "confused": ("confusion",), "whisper": ("whispered", "whispering"),
          "surprise": ("sur", "surprised"), "fear": ("fea", "fearful", "scared", "afraid")}
TAG_WORDS = {word: label for label in LABELS
             for word in (*(s for s in LABEL_SPELLINGS[label] if " " not in s), *_EXTRA[label])}
# RAVDESS file names: modality-channel-emotion-intensity-statement-repetition-actor
_RAVDESS = re.compile(r"(?<!\d)0[1-3]-0[12]-(0[1-8])-0[12]-0[12]-0[12]-\d\d(?!\d)")
RAVDESS_EMOTIONS = {"01": "neutral", "02": "neutral", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fear", "07": "contempt", "08": "surprise"}  # 02 calm: neutral here


def tag(name: str) -> str | None:
    """The emotion label a file name states (one of LABELS), or None: a RAVDESS name's emotion
    field, else the first token of the stem (split on _ - . and spaces, digits at its ends dropped)
    that spells a label; failing that, a folder's name inside a zip ("class.zip/angry/01.wav")."""
    parts = name.replace("\\", "/").split("/")
    stem = PurePosixPath(parts[-1]).stem
    if m := _RAVDESS.search(stem):
        return RAVDESS_EMOTIONS[m.group(1)]
    folders = [p for p in reversed(parts[:-1]) if not p.lower().endswith(".zip")]
    for text in (stem, *folders):
        for token in re.split(r"[_\-. ]+", text.lower()):
            if (label := TAG_WORDS.get(token.strip("0123456789()"))) is not None:
                return label
    return None


COLUMNS = ("file", "tag", "duration_s", "speech_found", "voice_type", "pitch_median_hz",
           "pitch_range_st", "level_dbfs", "articulation_rate_sps", "syllables_per_s",
           "syllable_count", "pause_count", "pause_s", "intonation", "jitter_local",
           "shimmer_local", "hnr_db", "pitch_level", "energy_level", "rate_level", "emotion", "error")
NUMERIC = ("duration_s", "pitch_median_hz", "pitch_range_st", "level_dbfs", "articulation_rate_sps",
           "syllables_per_s", "syllable_count", "pause_count", "pause_s", "jitter_local",
           "shimmer_local", "hnr_db")


def row(name: str, report: ProsodyReport) -> dict[str, Any]:
    """One clip's row (COLUMNS), JSON-safe: None where unmeasurable; "emotion" is left None for
    the app to fill when the model ran, "error" None (`failure_row` fills it for a file that
    failed). Jitter and shimmer are fractions (0.01 = 1 %)."""
    p, r, v, lv = report.pitch, report.rate, report.voice, report.levels
    values = dict(
        file=name, tag=tag(name), duration_s=_num(report.duration_s, 3), speech_found=bool(report.speech_found),
        voice_type=report.voice_type.assumed, pitch_median_hz=_num(p.median_hz, 2),
        pitch_range_st=_num(p.range_st, 2), level_dbfs=_num(report.energy.level_dbfs, 2),
        articulation_rate_sps=_num(r.articulation_rate_sps, 3), syllables_per_s=_num(r.syllables_per_s, 3),
        syllable_count=int(r.syllable_count), pause_count=int(r.pause_count), pause_s=_num(r.pause_s, 3),
        intonation=report.intonation.label, jitter_local=_num(v.jitter_local, 5),
        shimmer_local=_num(v.shimmer_local, 5), hnr_db=_num(v.hnr_db, 2), pitch_level=lv.pitch,
        energy_level=lv.energy, rate_level=lv.speed, emotion=None, error=None)
    return {c: values[c] for c in COLUMNS}


def failure_row(failure: Failure) -> dict[str, Any]:
    """A file that was not analysed, as a row: its name, its tag and why (the measures empty), so
    the table and the CSV account for every file a teacher uploaded."""
    return {**dict.fromkeys(COLUMNS), "file": failure.name, "tag": tag(failure.name), "error": failure.reason}


def _num(x: float | None, nd: int) -> float | None:
    return round(float(x), nd) if x is not None and math.isfinite(x) else None


def analyse(items: Sequence[Item], *, voice: str = "auto", limits: Limits = Limits(),
            progress: Callable[[int, int, str], None] | None = None) -> tuple[list[dict], list[Failure]]:
    """Load and analyse each item in order; `progress(done, total, name)` after each. A clip that
    cannot be loaded or analysed becomes a Failure (the AudioError's message, never a traceback).
    An unknown `voice` is refused (ValueError) before any work."""
    assume_voice(voice, None)
    rows, failed = [], []
    for done, item in enumerate(items, 1):
        short = PurePosixPath(item.name).name
        try:
            rows.append(row(item.name, analyze(load_audio(item.path, max_seconds=limits.max_seconds),
                                               voice=voice)))
        except AudioError as exc:
            failed.append(Failure(item.name, str(exc).replace(item.path.name, short)))
        except Exception as exc:  # noqa: BLE001 - one clip's failure must not stop the class's
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            failed.append(Failure(item.name, f"could not be analysed ({first}); try converting it to WAV"))
        if progress is not None:
            progress(done, len(items), item.name)
    return rows, failed


def to_csv(rows: list[dict], path: Path) -> Path:
    """Write `rows` as CSV (header COLUMNS, empty cells for None, speech_found 1/0). Text cells that
    a spreadsheet would run as a formula (=, +, -, @ first) get a leading apostrophe."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for r in rows:
            out.writerow([_cell(r.get(c)) for c in COLUMNS])
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else int(value) if isinstance(value, bool) else value
