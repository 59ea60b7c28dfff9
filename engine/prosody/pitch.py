"""Fundamental frequency (F0) with Praat, the way the reference labelling pipeline tracks it.

Two passes of Praat's autocorrelation pitch analysis (Boersma 1993, `Sound: To Pitch (ac)`):
a first, coarse pass over the paper's wide search range (55-500 Hz) finds the speaker's median,
then a second pass searches 0.6x-2.0x of that median, which removes most octave-halving and
-doubling; remaining octave jumps are repaired against a local (9-frame) and the global median
(docs/paper.md §3). Run from the command line, nothing: `engine.prosody.analyze` is the entry point.

Pitch is analysed at `ANALYSIS_RATE_HZ` (4 kHz) rather than 16 kHz: speaking F0 stays under
1 kHz and the harmonics below 2 kHz carry the periodicity Praat's autocorrelation needs, while its
cost per frame grows with the rate. Measured on one core here (10 s of espeak-ng speech, second
pass 60-200 Hz): 71 ms at 16 kHz with Praat's 15 candidates, 23 ms at 4 kHz with 3, F0 within
1 % of the 16 kHz track in 99 % of frames and voicing decisions agreeing in 98 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_STEP_S = 0.01  # the common 10 ms time axis of every contour (docs/paper.md §3)
SEARCH_FLOOR_HZ = 55.0  # first-pass search range, docs/paper.md §3
SEARCH_CEILING_HZ = 500.0
SECOND_PASS = (0.6, 2.0)  # second-pass range as multiples of the first-pass median, docs/paper.md §3
FIRST_PASS_FRAMES = 30  # the first pass only sets a 0.6x-2x search range: ~30 frames suffice
ANALYSIS_RATE_HZ = 4000  # pitch analysis rate (see module docstring)
MAX_CANDIDATES = 3  # Praat's default is 15; within a 0.6x-2x range 3 decide the same path
LOCAL_MEDIAN_FRAMES = 9  # octave repair window, docs/paper.md §3
OCTAVE_JUMP = 0.75  # |log2(f0 / local median)| beyond this (9 st) is treated as an octave error


@dataclass(frozen=True, eq=False)
class PitchTrack:
    """F0 on the common axis, with what the voice-quality measures need from Praat."""

    f0_hz: np.ndarray  # [n_frames] float, NaN where unvoiced
    floor_hz: float  # the second-pass search range actually used
    ceiling_hz: float
    sound: object = None  # parselmouth.Sound at ANALYSIS_RATE_HZ (for the point process)
    pitch: object = None  # parselmouth.Pitch of the second pass, or None when nothing was voiced


def frame_times(duration_s: float) -> np.ndarray:
    """Centres of the 10 ms frames that cover a clip: 0.005, 0.015, ... (seconds)."""
    n = max(int(np.floor(duration_s / FRAME_STEP_S + 1e-9)), 0)
    return (np.arange(n) + 0.5) * FRAME_STEP_S


def track_pitch(samples: np.ndarray, sample_rate_hz: int, times_s: np.ndarray) -> PitchTrack:
    """Two-pass Praat pitch tracking with octave repair, sampled at `times_s` (frame centres).
    Returns NaN everywhere when the clip has no periodic stretch."""
    import parselmouth

    from engine.audio import resample

    x = resample(samples, sample_rate_hz, ANALYSIS_RATE_HZ) if sample_rate_hz != ANALYSIS_RATE_HZ \
        else samples
    sound = parselmouth.Sound(x.astype(np.float64), ANALYSIS_RATE_HZ)
    nan = np.full(len(times_s), np.nan)
    first_step = min(max(sound.duration / FIRST_PASS_FRAMES, 2 * FRAME_STEP_S), 20 * FRAME_STEP_S)
    if sound.duration < 3.0 / SEARCH_FLOOR_HZ + first_step:
        return PitchTrack(nan, SEARCH_FLOOR_HZ, SEARCH_CEILING_HZ, sound)

    first = sound.to_pitch_ac(time_step=first_step, pitch_floor=SEARCH_FLOOR_HZ,
                              pitch_ceiling=SEARCH_CEILING_HZ,
                              max_number_of_candidates=MAX_CANDIDATES)
    f1 = first.selected_array["frequency"]
    if np.count_nonzero(f1) < 2:
        return PitchTrack(nan, SEARCH_FLOOR_HZ, SEARCH_CEILING_HZ, sound)
    median = float(np.median(f1[f1 > 0]))
    floor = max(SECOND_PASS[0] * median, 30.0)
    ceiling = min(SECOND_PASS[1] * median, 0.45 * ANALYSIS_RATE_HZ)
    if sound.duration < 3.0 / floor + FRAME_STEP_S:
        return PitchTrack(nan, floor, ceiling, sound)
    second = sound.to_pitch_ac(time_step=FRAME_STEP_S, pitch_floor=floor, pitch_ceiling=ceiling,
                               max_number_of_candidates=MAX_CANDIDATES)
    arr = second.selected_array
    f0 = _on_axis(second.xs(), np.where(arr["frequency"] > 0, arr["frequency"], np.nan), times_s)
    return PitchTrack(repair_octaves(f0), floor, ceiling, sound, second)


def repair_octaves(f0_hz: np.ndarray) -> np.ndarray:
    """Move frames that sit an octave (or two) away from their 9-frame neighbourhood back by whole
    octaves, when that also brings them closer to the global median (docs/paper.md §3)."""
    voiced = np.isfinite(f0_hz)
    if voiced.sum() < 3:
        return f0_hz
    local = _sliding_nanmedian(f0_hz, LOCAL_MEDIAN_FRAMES)
    global_median = np.nanmedian(f0_hz)
    ratio = np.log2(f0_hz / local)
    octaves = np.where(np.abs(ratio) > OCTAVE_JUMP, np.round(ratio), 0.0)
    moved = f0_hz / np.exp2(octaves)
    closer = np.abs(np.log2(moved / global_median)) < np.abs(np.log2(f0_hz / global_median))
    fix = voiced & (octaves != 0) & closer
    out = f0_hz.copy()
    out[fix] = moved[fix]
    return out


def _sliding_nanmedian(x: np.ndarray, width: int) -> np.ndarray:
    """Median of the finite values in a centred window of `width` frames (NaN if none)."""
    half = width // 2
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, half, constant_values=np.nan), width)
    ordered = np.sort(windows, axis=1)  # NaN sorts last
    count = np.isfinite(windows).sum(axis=1)
    rows = np.arange(len(x))
    lo, hi = np.maximum((count - 1) // 2, 0), np.maximum(count // 2, 0)
    out = 0.5 * (ordered[rows, lo] + ordered[rows, hi])
    out[count == 0] = np.nan
    return out


def _on_axis(src_times: np.ndarray, values: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Nearest Praat frame for each axis time; NaN where no frame lies within half a step."""
    out = np.full(len(times_s), np.nan)
    if len(src_times) == 0:
        return out
    step = src_times[1] - src_times[0] if len(src_times) > 1 else FRAME_STEP_S
    idx = np.rint((times_s - src_times[0]) / step).astype(int)
    ok = (idx >= 0) & (idx < len(src_times))
    ok[ok] &= np.abs(src_times[idx[ok]] - times_s[ok]) <= step / 2 + 1e-9
    out[ok] = values[idx[ok]]
    return out
