"""The prosody labelling pipeline: audio + transcript -> EmotionCoT-style labels.

    python -m train.label all --input clips.jsonl --output labelled.jsonl [--workers 4]
    python -m train.label extract --input clips.jsonl --output measured.jsonl
    python -m train.label calibrate --input measured.jsonl --output labelled.jsonl [--min-group 50]

Input: JSON lines with `audio_path` and optionally `transcription`, `emotion`, `dataset`,
`gender`; every other field is carried through. Paths follow train.records' rule (relative to the
file's folder), and the output's are rewritten to resolve from the output's folder, so
`--input clips.jsonl --output data/labelled.jsonl` feeds train.sft as it is.
Two passes, as the reference pipeline (docs/paper.md §3):
- extract measures each clip with engine.prosody in a process pool: pitch, energy, speaking rate
  (syllables per second of speech from the transcript via CMUdict; the acoustic syllable-nuclei
  rate without one), intonation, voice quality, under `prosody`; `intonation` at the top level;
  gender / age / stress from the record or a tagger plug-in (train.taggers), else null.
- calibrate turns measurements into low/normal/high by tertiles per group: energy per dataset,
  pitch per dataset and gender, rate per dataset and rate source (transcript or acoustic: two
  estimators, never one tertile set); a group of fewer than `--min-group` clips (50) uses the
  cuts pooled over datasets, pitch within its gender and rate within its source. The cut
  points go to OUT.cuts.json, the label distribution to OUT.report.md.
A clip that fails goes to OUT.errors.jsonl with the reason; a rerun skips clips already in the
output (and retries the failed ones). The output is in the EmotionCoT schema, so released
EmotionCoT annotations and these are interchangeable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engine.prosody.levels import LEVEL_WORDS, place
from train.records import SCHEMA, JsonlWriter, audio_file, load_clip, read_jsonl, rebase

TERTILES = (100 / 3, 200 / 3)  # percentiles of the cut points (docs/paper.md §3)
MIN_GROUP = 50  # smaller groups fall back to pooled cuts (docs/paper.md §3), pitch within its gender
MEASURE = {"pitch": "pitch_median_hz", "energy": "energy_dbfs", "speed": "rate_sps"}

logger = logging.getLogger(__name__)
_TAGGERS: list = []  # set in each worker process


def measure(record: dict[str, Any], base: str) -> dict[str, Any]:
    """Extract one record: its prosody measurements and the tagged fields. Raises on failure."""
    from engine.prosody import analyze
    from train.phonemes import count_syllables
    from train.taggers import tag_fields

    clip = load_clip(record, base)
    report = analyze(clip)
    p, e, r, i = report.pitch, report.energy, report.rate, report.intonation
    syllables = count_syllables(record.get("transcription"))
    text_rate = syllables / r.speech_s if syllables and r.speech_s > 0 else None
    out = dict(record)
    out.update(tag_fields(clip, record, _TAGGERS))
    out["intonation"] = i.label
    out["prosody"] = {
        "duration_s": round(clip.duration_s, 3), "speech_s": round(r.speech_s, 3),
        "pitch_median_hz": _r(p.median_hz), "pitch_p5_hz": _r(p.p5_hz), "pitch_p95_hz": _r(p.p95_hz),
        "pitch_range_st": _r(p.range_st), "pitch_reliable": p.reliable,
        "voiced_fraction": _r(p.voiced_fraction), "energy_dbfs": _r(e.level_dbfs),
        "snr_db": _r(e.snr_db), "syllables": syllables, "text_rate_sps": _r(text_rate),
        "acoustic_rate_sps": _r(r.articulation_rate_sps), "pause_count": r.pause_count,
        "rate_sps": _r(text_rate if text_rate is not None else r.articulation_rate_sps),
        "rate_source": "transcript" if text_rate is not None else "acoustic",
        "intonation_shape": i.shape, "intonation_confidence": round(i.confidence, 3),
        "jitter_local": _r(report.voice.jitter_local, 5), "hnr_db": _r(report.voice.hnr_db),
    }
    if not p.reliable:
        out["prosody"]["pitch_median_hz"] = None  # unreliable pitch is not labelled
    return out


def extract(input_path: Path, output: Path, workers: int = 1, taggers: tuple[str, ...] = ()) -> dict:
    """Measure every clip not yet in `output`; append results (their audio paths rebased to
    resolve from the output's folder), write failures to the errors file. Returns counts and
    throughput."""
    records = list(read_jsonl(input_path))
    done = {_key(r, output.parent) for r in read_jsonl(output)} if output.exists() else set()
    todo = [r for r in records if _key(r, input_path.parent) not in done]
    errors_path = output.with_suffix(".errors.jsonl")
    n_ok = n_err = 0
    start = time.perf_counter()
    with JsonlWriter(output, append=True) as out, JsonlWriter(errors_path) as errors:
        for record, result, error in _run(todo, str(input_path.parent), workers, taggers):
            if error is None:
                out.write(rebase(result, input_path.parent, output.parent))
                n_ok += 1
            else:
                message, trace = error
                if trace:  # a defect rather than a bad clip: keep the traceback
                    logger.error("measuring %s failed:\n%s", record.get("audio_path"), trace)
                errors.write({"audio_path": record.get("audio_path"), "error": message})
                n_err += 1
    seconds = time.perf_counter() - start
    stats = {"total": len(records), "skipped": len(records) - len(todo), "measured": n_ok,
             "failed": n_err, "seconds": round(seconds, 2),
             "clips_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None}
    print(f"extract: {json.dumps(stats)}", file=sys.stderr)
    return stats


def calibrate(input_path: Path, output: Path, min_group: int = MIN_GROUP) -> dict:
    """Levels by tertiles per group; writes the labelled records, the cuts and a report."""
    records = [rebase(r, input_path.parent, output.parent) for r in read_jsonl(input_path)]
    cuts: dict[str, dict[str, list[float] | None]] = {}
    for attr, key in MEASURE.items():
        by_group, by_pool = defaultdict(list), defaultdict(list)
        for r in records:
            if r["prosody"].get(key) is not None:
                by_group[_group(attr, r)].append(r["prosody"][key])
                by_pool[_pool(attr, r)].append(r["prosody"][key])
        cuts[attr] = {pool: _tertiles(vs) for pool, vs in sorted(by_pool.items())}
        cuts[attr].update({g: (_tertiles(vs) if len(vs) >= min_group else None)
                           for g, vs in sorted(by_group.items())})
    counts: dict[str, Counter] = defaultdict(Counter)
    with JsonlWriter(output) as out:
        for r in records:
            for attr, key in MEASURE.items():
                value, group = r["prosody"].get(key), _group(attr, r)
                cut = cuts[attr].get(group) or cuts[attr].get(_pool(attr, r))
                level = place(value, cut, LEVEL_WORDS[attr])
                r[f"{attr}_level"] = level
                counts[f"{attr} {group}"][level] += 1
            for field in SCHEMA:
                r.setdefault(field, None)
            out.write(r)
    output.with_suffix(".cuts.json").write_text(json.dumps(
        {"percentiles": TERTILES, "min_group": min_group, "cuts": cuts}, indent=2))
    output.with_suffix(".report.md").write_text(_report(counts, cuts, len(records), records))
    return cuts


def _run(records, base, workers, taggers) -> Iterator[tuple[dict, dict | None, str | None]]:
    if workers <= 1:
        _init_worker(taggers)
        for r in records:
            yield (r, *_safe_measure((r, base)))
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(taggers,)) as pool:
        from tqdm.auto import tqdm

        results = pool.map(_safe_measure, [(r, base) for r in records], chunksize=4)
        for r, res in tqdm(zip(records, results), total=len(records), desc="measuring",
                           file=sys.stderr, disable=None):
            yield (r, *res)


def _init_worker(taggers: tuple[str, ...]) -> None:
    from train.taggers import load_tagger

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _TAGGERS[:] = [load_tagger(t) for t in taggers]


def _safe_measure(args) -> tuple[dict | None, tuple[str, str | None] | None]:
    """(result, None), or (None, (message, traceback or None)): a ValueError is a bad clip (the
    message says why); anything else is a defect whose traceback the caller logs."""
    record, base = args
    try:
        return measure(record, base), None
    except ValueError as exc:
        return None, (str(exc), None)
    except Exception as exc:  # noqa: BLE001 - one failing clip must not stop the corpus
        return None, (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _key(record: dict, base: Path) -> str | None:
    """The record's audio file as an absolute path (what makes two records the same clip)."""
    try:
        return os.path.abspath(audio_file(record, base))
    except ValueError:
        return None


def _group(attr: str, record: dict) -> str:
    """The group whose tertiles set the record's level: the dataset, and for pitch its gender,
    for speed the rate's source (a transcript's syllables and acoustic nuclei are two
    estimators with different scales, never mixed in one tertile set)."""
    dataset = record.get("dataset") or "all"
    return f"{dataset}/{_split(attr, record)}" if _split(attr, record) else dataset


def _pool(attr: str, record: dict) -> str:
    """Where a group under --min-group clips takes its cuts: every dataset pooled, but pitch
    only within its gender (the reference pipeline never pools pitch across genders) and speed
    only within its rate source."""
    return f"pooled/{_split(attr, record)}" if _split(attr, record) else "pooled"


def _split(attr: str, record: dict) -> str | None:
    if attr == "pitch":
        return record.get("gender") or "unknown"
    if attr == "speed":
        return record["prosody"].get("rate_source") or "acoustic"
    return None


def _tertiles(values: list[float]) -> list[float] | None:
    return [round(float(v), 4) for v in np.percentile(values, TERTILES)] if values else None


def _report(counts: dict[str, Counter], cuts: dict, n: int, records: list[dict]) -> str:
    pools = {f"{attr} {_group(attr, r)}": _pool(attr, r) for r in records for attr in MEASURE}
    lines = [f"# Prosody label distribution ({n} clips)", "",
             "| attribute group | cuts (low/high) | " + " | ".join(("low", "normal", "high", "none")) + " |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, c in sorted(counts.items()):
        attr, group = name.split(" ", 1)
        own = cuts[attr].get(group)
        cut = own or cuts[attr].get(pools[name])
        cut_text = f"{cut[0]:g} / {cut[1]:g}" + ("" if own else f" ({pools[name]})") if cut else "-"
        names = LEVEL_WORDS[attr]
        lines.append(f"| {name} | {cut_text} | " + " | ".join(str(c.get(k, 0)) for k in (*names, None)) + " |")
    return "\n".join(lines) + "\n"


def _r(x, nd: int = 3):
    return None if x is None else round(float(x), nd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.label", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["extract", "calibrate", "all"])
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-group", type=int, default=MIN_GROUP)
    ap.add_argument("--tagger", action="append", default=[], help="module:Class, repeatable")
    args = ap.parse_args(argv)
    if args.step in ("extract", "all"):
        measured = args.output if args.step == "extract" else args.output.with_suffix(".measured.jsonl")
        stats = extract(args.input, measured, args.workers, tuple(args.tagger))
        if args.step == "all":
            calibrate(measured, args.output, args.min_group)
        return 2 if stats["failed"] else 0
    calibrate(args.input, args.output, args.min_group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
