"""Keep what was measured: a clip's analysis as Praat files, CSV and JSON.

    from engine.export import write_all
    paths = write_all(report, "out/", "clip")   # clip.TextGrid clip.PitchTier clip.csv clip.json

    python -m engine analyze FILES --textgrid DIR              # the same from the command line

- TextGrid (Praat's long text format), three tiers a teacher can open beside the clip in Praat:
  "speech" (interval tier: "speech" and "pause" intervals from the speech-activity mask, the
  edges before the first and after the last speech left unlabelled), "nuclei" (point tier: one
  point "syllable" at each syllable nucleus) and "intonation" (interval tier: the intonation
  label over the voiced span, from its first to its last voiced frame).
- PitchTier: the F0 of every voiced frame inside speech (Hz), as Praat's Manipulation uses it.
- CSV: one row per 10 ms frame: time_s, f0_hz, f0_st, intensity_db, speech (1/0); empty where
  unmeasurable.
- JSON: the CLI's `--json` object (every measurement, the summary, the contours).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from engine.prosody.analysis import ProsodyReport, runs
from engine.prosody.pitch import FRAME_STEP_S

TIERS = ("speech", "nuclei", "intonation")  # the TextGrid's tiers, in order


def textgrid(report: ProsodyReport, path: str | Path) -> Path:
    """Write the report's TextGrid (module docstring) and return its path."""
    from parselmouth.praat import call

    duration = report.duration_s
    grid = call("Create TextGrid", 0.0, duration, " ".join(TIERS), "nuclei")  # nuclei: points
    spans = runs(report.contours.speech)
    edges = [(a * FRAME_STEP_S, b * FRAME_STEP_S) for a, b in spans]
    for i, (start, end) in enumerate(edges):
        _interval(grid, 1, start, end, "speech", duration)
        if i + 1 < len(edges):
            _interval(grid, 1, end, edges[i + 1][0], "pause", duration)
    for t in report.rate.nuclei_s:
        call(grid, "Insert point", 2, float(t), "syllable")
    voiced = np.flatnonzero(np.isfinite(report.contours.f0_hz) & report.contours.speech)
    if voiced.size:
        start = float(report.contours.time_s[voiced[0]] - FRAME_STEP_S / 2)
        end = float(report.contours.time_s[voiced[-1]] + FRAME_STEP_S / 2)
        _interval(grid, 3, start, end, report.intonation.label, duration)
    path = Path(path)
    call(grid, "Save as text file", str(path))
    return path


def pitch_tier(report: ProsodyReport, path: str | Path) -> Path:
    """Write the voiced F0 inside speech as a Praat PitchTier and return its path."""
    from parselmouth.praat import call

    tier = call("Create PitchTier", "pitch", 0.0, report.duration_s)
    c = report.contours
    for t, f in zip(c.time_s[c.speech], c.f0_hz[c.speech]):
        if np.isfinite(f):
            call(tier, "Add point", float(t), float(f))
    path = Path(path)
    call(tier, "Save as text file", str(path))
    return path


def frames_csv(report: ProsodyReport, path: str | Path) -> Path:
    """One row per 10 ms frame (module docstring)."""
    c = report.contours
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["time_s", "f0_hz", "f0_st", "intensity_db", "speech"])
        for row in zip(c.time_s, c.f0_hz, c.f0_st, c.intensity_db, c.speech):
            t, hz, st, db, sp = row
            out.writerow([f"{t:.3f}", _cell(hz, 2), _cell(st, 2), _cell(db, 1), int(sp)])
    return path


def write_all(report: ProsodyReport, folder: str | Path, stem: str, record: dict | None = None) -> list[Path]:
    """TextGrid, PitchTier, CSV and JSON for one clip in `folder`; `record` (the CLI's JSON
    object) is written as the JSON, else the report's own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = record if record is not None else report.to_dict()
    (folder / f"{stem}.json").write_text(json.dumps(body), encoding="utf-8")
    return [textgrid(report, folder / f"{stem}.TextGrid"), pitch_tier(report, folder / f"{stem}.PitchTier"),
            frames_csv(report, folder / f"{stem}.csv"), folder / f"{stem}.json"]


def _interval(grid, tier: int, start: float, end: float, label: str, duration: float) -> None:
    """Label the interval [start, end] of `tier`, inserting its boundaries."""
    from parselmouth.praat import call

    for t in (start, end):
        if 0.0 < t < duration:
            try:
                call(grid, "Insert boundary", tier, float(t))
            except Exception:  # noqa: BLE001 - Praat refuses a boundary that is already there
                pass
    index = call(grid, "Get interval at time", tier, (start + end) / 2)
    call(grid, "Set interval text", tier, index, label)


def _cell(value: float, nd: int) -> str:
    return "" if not np.isfinite(value) else f"{value:.{nd}f}"
