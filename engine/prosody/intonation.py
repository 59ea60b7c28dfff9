"""Intonation: the shape and liveliness of a pitch contour, by the reference pipeline's rules.

Rules (docs/paper.md §3): voiced frames at their real times, in semitones re the utterance median,
median-filtered (5 frames) then Savitzky-Golay smoothed (9 frames, order 2).
- dynamics: p95-p5 range < 3 st "flat", > 9 st "expressive", otherwise "moderate";
- shape: a turn ("rising-falling" / "falling-rising") when a quadratic fit has its vertex within
  the middle half of the contour, the vertex lies >= 2 st from both ends, and the quadratic
  explains >= 0.05 more variance (R^2) than a line; otherwise delta = median(last quarter) -
  median(first quarter) of voiced time: >= +2 st "rising", <= -2 st "falling", else "level";
- label: the shape when it moves; for a level shape "expressive" when the dynamics are, else
  "flat" (the reference label set has no "level"); "too_short" under 0.5 s of voicing;
  "uncertain" when confidence < 0.15;
- confidence: min(1, voiced seconds / 1 s), times 0.7 for each pause longer than 0.3 s.
The label set is the EmotionCoT one (docs/paper.md §2). How the label is formed from shape and
dynamics is not written in the paper: the order above is this project's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.prosody.levels import EXPRESSIVE_RANGE_ST, FLAT_RANGE_ST  # the dynamics cuts

MOVE_ST = 2.0  # head-to-tail change for rising / falling, and depth for a turn (docs/paper.md §3)
TURN_VERTEX = (0.25, 0.75)  # the vertex must fall in the middle half of the contour
TURN_R2_GAIN = 0.05  # quadratic over linear R^2 gain needed for a turn
MIN_VOICED_S = 0.5  # under this much voicing the shape is "too_short"
FULL_CONFIDENCE_VOICED_S = 1.0  # confidence falls linearly below this much voicing
PAUSE_PENALTY = 0.7  # confidence factor per long pause
UNCERTAIN_BELOW = 0.15  # confidence under which the label is "uncertain"
MEDIAN_FILTER = 5  # frames
SMOOTH_FRAMES, SMOOTH_ORDER = 9, 2  # Savitzky-Golay window (frames) and polynomial order

LABELS = ("rising", "falling", "rising-falling", "falling-rising", "flat", "expressive",
          "uncertain", "too_short")


@dataclass(frozen=True)
class Intonation:
    """The contour's shape, liveliness and how much to trust them."""

    label: str  # one of LABELS
    shape: str | None  # rising, falling, rising-falling, falling-rising, level; None if too short
    dynamics: str | None  # flat, moderate, expressive; None if too short
    confidence: float  # 0..1
    range_st: float | None  # p95-p5 of the smoothed contour, semitones
    delta_st: float | None  # median(last quarter) - median(first quarter), semitones
    voiced_s: float  # seconds of voicing the decision rests on

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "shape": self.shape, "dynamics": self.dynamics,
                "confidence": round(self.confidence, 3), "range_st": _round(self.range_st),
                "delta_st": _round(self.delta_st), "voiced_s": round(self.voiced_s, 3)}


def classify(times_s: np.ndarray, f0_hz: np.ndarray, long_pauses: int = 0,
             frame_s: float = 0.01) -> Intonation:
    """Label the intonation of a contour: `f0_hz` at `times_s`, NaN where unvoiced or outside
    speech; `long_pauses` is the number of pauses over 0.3 s inside the utterance."""
    from scipy.signal import medfilt

    voiced = np.isfinite(f0_hz) & (f0_hz > 0)
    n = int(voiced.sum())
    voiced_s = n * frame_s
    if voiced_s < MIN_VOICED_S:
        return Intonation("too_short", None, None, 0.0, None, None, voiced_s)
    t = times_s[voiced]
    st = 12.0 * np.log2(f0_hz[voiced] / np.median(f0_hz[voiced]))
    st = smooth(medfilt(st, MEDIAN_FILTER))

    p5, p95 = np.percentile(st, [5, 95])
    range_st = float(p95 - p5)
    dynamics = ("flat" if range_st < FLAT_RANGE_ST
                else "expressive" if range_st > EXPRESSIVE_RANGE_ST else "moderate")
    quarter = max(n // 4, 1)
    delta = float(np.median(st[-quarter:]) - np.median(st[:quarter]))
    shape = _turn(t, st) or ("rising" if delta >= MOVE_ST else
                             "falling" if delta <= -MOVE_ST else "level")

    confidence = min(1.0, voiced_s / FULL_CONFIDENCE_VOICED_S) * PAUSE_PENALTY ** long_pauses
    if confidence < UNCERTAIN_BELOW:
        label = "uncertain"
    elif shape != "level":
        label = shape
    else:
        label = "expressive" if dynamics == "expressive" else "flat"
    return Intonation(label, shape, dynamics, float(confidence), range_st, delta, voiced_s)


def smooth(y: np.ndarray) -> np.ndarray:
    """Savitzky-Golay smoothing (SMOOTH_FRAMES, SMOOTH_ORDER) with polynomial fits at the edges,
    as scipy's `savgol_filter(mode="interp")` but without its per-call overhead (~3 ms)."""
    from scipy.signal import savgol_coeffs

    n, half = len(y), SMOOTH_FRAMES // 2
    if n < SMOOTH_FRAMES:
        return y
    out = np.convolve(y, savgol_coeffs(SMOOTH_FRAMES, SMOOTH_ORDER)[::-1], mode="same")
    x = np.arange(SMOOTH_FRAMES)
    out[:half] = np.polyval(np.polyfit(x, y[:SMOOTH_FRAMES], SMOOTH_ORDER), x[:half])
    out[-half:] = np.polyval(np.polyfit(x, y[-SMOOTH_FRAMES:], SMOOTH_ORDER), x[-half:])
    return out


def _turn(t: np.ndarray, st: np.ndarray) -> str | None:
    """'rising-falling' or 'falling-rising' when the contour has a clear mid-utterance turn."""
    span = t[-1] - t[0]
    if span <= 0 or len(st) < 5:
        return None
    u = (t - t[0]) / span
    total = float(np.sum((st - st.mean()) ** 2))
    if total <= 1e-12:
        return None
    line = np.polyfit(u, st, 1)
    quad = np.polyfit(u, st, 2)
    r2_line = 1.0 - float(np.sum((st - np.polyval(line, u)) ** 2)) / total
    r2_quad = 1.0 - float(np.sum((st - np.polyval(quad, u)) ** 2)) / total
    a, b, _ = quad
    if abs(a) < 1e-9 or r2_quad - r2_line < TURN_R2_GAIN:
        return None
    vertex = -b / (2 * a)
    if not TURN_VERTEX[0] <= vertex <= TURN_VERTEX[1]:
        return None
    top = np.polyval(quad, vertex)
    depth = min(abs(top - np.polyval(quad, 0.0)), abs(top - np.polyval(quad, 1.0)))
    if depth < MOVE_ST:
        return None
    return "rising-falling" if a < 0 else "falling-rising"


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)
