"""Imitation scoring: how closely a student's recording follows a target clip's prosody.

    from engine.audio import load_audio
    from engine.imitate import compare
    result = compare(load_audio("target.wav"), load_audio("attempt.wav"))  # Clips or reports
    result.to_dict()  # {"melody": 82.4, "range": 61.0, "tempo": 90.3, "loudness": 95.1,
                      #  "pauses": 100.0, "overall": 85.8}
    for s in result.scores:
        print(s.name, s.score, s.measure, s.feedback)
    result.aligned()  # both contours on the target's time axis, for a plot

Both clips are analysed (`engine.prosody.analyze`), aligned by dynamic time warping (DTW), so a
slow speaker can imitate a fast one, and scored 0-100 on five dimensions, each with its measure
and one sentence of feedback; unmeasurable ones are None, `overall` the mean of the others.
Every ratio (attempt / target) becomes a score by one function, `ratio_score` (0 at a factor 2).
- alignment: DTW from the first to the last speech frame of each clip on 20 ms frames of pitch
  in semitones re the speaker's own median (a man can imitate a woman), interpolated through
  unvoiced frames; intensity in dB re the clip's own speech median (gain does not matter),
  floored at -30 dB and at the floor in pauses; voicing. Steps (1,0), (0,1), (1,1).
- melody: correlation of the aligned contours over frames voiced in both, x 100 (negative: 0).
  A flat contour (sd < 0.5 st) has no shape to correlate: flat vs flat 100, flat vs moving 0.
  The feedback names the third (start, middle, end) where the shapes differ most, and how.
- range: the pitch ranges (p5-p95, st) as a ratio.
- tempo: the speaking times (speech frames, pauses excluded) as a ratio: the articulation-rate
  ratio of the same words. The nuclei count behind `rate.articulation_rate_sps` errs ~12 % per
  clip, but an imitation says the target's words, so the count cancels: on PSOLA tempo 1.3x and
  0.6x the time ratio came within 3 %, the nuclei-rate ratio up to 16 % off (1.10 for 1.3x).
- loudness: the intensity spreads (p10-p90 dB over voiced speech frames) as a ratio. Not a
  correlation of aligned intensity: that is mostly the vowel/consonant rhythm any reading of
  the sentence has, already matched by the DTW. Voiced frames: the quietest speech frames sit
  at the speech threshold, which follows the noise floor. A clip against itself with white
  noise at 20 dB SNR (espeak-ng and 6 real clips) scores 70-98 so, 0-58 with p5-p95 of all
  speech frames; against its PSOLA variants (monotone, wider, 1.3x, 0.6x, -8 st) 80-100.
- pauses: the share of the utterance spent pausing, compared as a difference (0 at a quarter of
  the utterance). A share, not seconds or a count: tempo (scored apart) leaves it alone, and a
  pause weighs less in a long sentence. A difference, not a ratio: most sentences have no pause.
Known limit: the DTW bends towards matching pitch, so unrelated contours of one sentence score
a melody of ~40 where a linear time axis gives ~25 (see STEP_PENALTY); read melody scores under
~45 as "a different tune".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.audio import Clip
from engine.prosody.analysis import ProsodyReport, analyze

DIMENSIONS = ("melody", "range", "tempo", "loudness", "pauses")
MAX_SECONDS = 60.0  # per clip: the DTW grid grows with the product of the lengths (60 s vs 60 s:
#   3000 x 3000 cells, 18 MB of step choices, 0.4 s); imitation is sentence-sized work
HOP = 2  # DTW on pairs of 10 ms frames: 20 ms still resolves syllables (100-250 ms) and quarters
#   the grid (two 10 s clips: ~20 ms; 52 s against 44 s: 0.25 s)
SILENCE_DB = -30.0  # intensity re the speech median is floored here: below is silence, and where
#   a recording's noise floor lies must not steer the alignment
DB_SCALE = 6.0  # dB per cost unit: about a quarter of a clip's speech intensity spread
ST_SCALE = 3.0  # semitones per cost unit: about one standard deviation of a speaking contour
VOICING_COST = 1.0  # a voiced frame against an unvoiced one (a vowel against a consonant)
STEP_PENALTY = 0.5  # cost units per non-diagonal step: prefer frame-by-frame matching where the
#   tempo allows. Pitch weight and penalty were set on the real RAVDESS clips: X against Y (the
#   other speaker, same sentence) carrying an unrelated clip's contour scores melody 42 on
#   average (24 on a linear time axis: statements share declination), Y carrying X's contour 87;
#   a pitch weight of 1/6 st gave 35 vs 73, none 28 vs 59, penalty 0.1 47 vs 87. Wobble (an
#   unrelated contour at 0.2x, a near-monotone) scores ~23.
MIN_PAIRS = 25  # aligned frames voiced in both needed for a melody (analysis.py's minimum of
#   voiced frames for a reliable pitch); also the voiced frames needed for a loudness spread
FLAT_STD_ST = 0.5  # a contour with a smaller sd is one note: PSOLA's monotone keeps 0.04-0.27 st,
#   the 30 real clips of the development set move 1.6-4.9 st, espeak-ng 1.3-1.6 st
MIN_RANGE_ST = 1.0  # ranges are floored here before their ratio: movements under ~1 st are barely
#   heard in running speech, so two near-monotones match instead of differing by 3x
MIN_SPREAD_DB = 3.0  # likewise for loudness spreads (level steps of 1-2 dB are just audible)
PAUSE_SHARE_SPAN = 0.25  # pause-share difference that scores 0 (a quarter of the utterance)
GOOD = 85.0  # a score from here up gets praise instead of a correction
THIRDS = ("at the start", "in the middle", "at the end")
MOVE_ST = 1.0  # change over a third of the utterance that counts as a rise or a fall
END_WEIGHT = 1.25  # the end's mismatch counts this much more when choosing what to say: the final
#   movement carries the sentence type (question or statement), the first thing a teacher hears


def ratio_score(ratio: float) -> float:
    """100 * max(0, 1 - |log2(ratio)|): 100 for equal values, 0 when one is twice the other.
    On a log scale twice and half as fast are equally far off, and range, tempo and loudness are
    heard in proportion (Weber), not in differences; a factor of two is no imitation any more."""
    return float(100.0 * max(0.0, 1.0 - abs(np.log2(ratio))))


@dataclass(frozen=True)
class Score:
    name: str  # one of DIMENSIONS
    score: float | None  # 0-100, None when unmeasurable
    measure: str  # the measure behind it, in words with its value
    feedback: str  # one plain sentence for a student


@dataclass(frozen=True, eq=False)
class Imitation:
    scores: tuple[Score, ...]  # in DIMENSIONS order
    overall: float | None  # mean of the measurable scores; None if none is
    path: np.ndarray  # DTW path, int [k, 2] of (target frame, attempt frame), 10 ms frames
    target: ProsodyReport
    attempt: ProsodyReport

    def to_dict(self) -> dict:
        """The endpoint's "scores": each dimension and "overall", rounded to 0.1, or None."""
        out = {s.name: _round(s.score) for s in self.scores}
        out["overall"] = _round(self.overall)
        return out

    def aligned(self) -> dict[str, np.ndarray]:
        """Both clips along the path on the target's time axis: semitones re each speaker's
        median (NaN where unvoiced or outside speech), dB re each clip's speech median."""
        i, j = self.path[:, 0], self.path[:, 1]
        t, a = self.target, self.attempt
        return {"time_s": t.contours.time_s[i], "target_st": _speech_st(t)[i],
                "attempt_st": _speech_st(a)[j], "target_db": _relative_db(t)[i],
                "attempt_db": _relative_db(a)[j]}


def compare(target: Clip | ProsodyReport, attempt: Clip | ProsodyReport) -> Imitation:
    """Score how closely `attempt` imitates the prosody of `target`: clips of up to 60 s (a longer
    one is a ValueError) or their reports."""
    t, a = _report(target, "target"), _report(attempt, "attempt")
    path = align(t, a)
    scores = (_melody(t, a, path), _range(t, a), _tempo(t, a), _loudness(t, a), _pauses(t, a))
    measured = [s.score for s in scores if s.score is not None]
    return Imitation(scores, float(np.mean(measured)) if measured else None, path, t, a)


def align(target: ProsodyReport, attempt: ProsodyReport) -> np.ndarray:
    """DTW path, int [k, 2] of (target frame, attempt frame), from the first to the last speech
    frame of each (the whole clip where there is no speech)."""
    (ft, t0, nt), (fa, a0, na) = _features(target), _features(attempt)
    coarse = dtw(ft, fa)
    # back to 10 ms frames: each coarse step becomes HOP fine steps in the same direction
    steps = np.diff(coarse, axis=0, append=coarse[-1:] + 1)
    fine = (HOP * coarse[:, None] + np.arange(HOP)[None, :, None] * steps[:, None]).reshape(-1, 2)
    fine = np.minimum(fine, [nt - 1, na - 1])  # the padding of an odd span
    keep = np.concatenate([[True], np.any(np.diff(fine, axis=0) != 0, axis=1)])
    return fine[keep] + [t0, a0]


def dtw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-cost path (L1 between feature rows of x [n, f] and y [m, f], STEP_PENALTY per
    non-diagonal step) from (0, 0) to (n-1, m-1). A cell on anti-diagonal d = i + j depends only
    on diagonals d-1 and d-2, so each diagonal is one vector operation."""
    n, m = len(x), len(y)
    y_rev = y[::-1]  # j = d - i runs backwards along a diagonal: a plain slice of reversed y
    prev, prev2 = np.full(n + 1, np.inf), np.full(n + 1, np.inf)  # index i + 1; 0 is the border
    choice = np.zeros((n + m - 1, n), np.int8)  # 0 from (i-1, j-1), 1 from (i-1, j), 2 (i, j-1)
    for d in range(n + m - 1):
        lo, hi = max(0, d - m + 1), min(n - 1, d)
        cost = np.abs(x[lo:hi + 1] - y_rev[m - 1 - d + lo:m - d + hi]).sum(axis=1)
        here = np.full(n + 1, np.inf)
        if d == 0:
            here[1] = cost[0]
        else:
            options = np.stack([prev2[lo:hi + 1], prev[lo:hi + 1] + STEP_PENALTY,
                                prev[lo + 1:hi + 2] + STEP_PENALTY])
            best = np.argmin(options, axis=0)
            choice[d, lo:hi + 1] = best
            here[lo + 1:hi + 2] = cost + options[best, np.arange(hi - lo + 1)]
        prev2, prev = prev, here
    i, j, path = n - 1, m - 1, [(n - 1, m - 1)]
    while i or j:
        step = choice[i + j, i]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        path.append((i, j))
    return np.array(path[::-1], dtype=np.int64)


def _features(report: ProsodyReport) -> tuple[np.ndarray, int, int]:
    """Scaled DTW features of the speech span in HOP-frame steps, its first frame and length."""
    c = report.contours
    spoken = np.flatnonzero(c.speech)
    start, stop = (spoken[0], spoken[-1] + 1) if spoken.size else (0, len(c.speech))
    db = np.where(c.speech[start:stop], _relative_db(report)[start:stop], SILENCE_DB)
    st = _speech_st(report)[start:stop]
    voiced = np.isfinite(st)
    # unvoiced frames get the pitch interpolated from their voiced neighbours: the melody carries
    # on through consonants and pauses, which then neither pull the path nor look like a drop
    k = np.arange(len(st))
    st = np.interp(k, k[voiced], st[voiced]) if voiced.any() else np.zeros(len(st))
    feats = np.stack([db / DB_SCALE, st / ST_SCALE, voiced * VOICING_COST], axis=1)
    feats = np.concatenate([feats, np.repeat(feats[-1:], -len(feats) % HOP, axis=0)])
    return feats.reshape(-1, HOP, 3).mean(axis=1), int(start), int(stop - start)


def _speech_st(report: ProsodyReport) -> np.ndarray:
    c = report.contours
    return np.where(c.speech, c.f0_st, np.nan)


def _relative_db(report: ProsodyReport) -> np.ndarray:
    c = report.contours
    level = np.median(c.intensity_db[c.speech] if c.speech.any() else c.intensity_db)
    return np.maximum(c.intensity_db - level, SILENCE_DB)


def _melody(t: ProsodyReport, a: ProsodyReport, path: np.ndarray) -> Score:
    if missing := _no_pitch(t, a):
        return _unmeasurable("melody", "melody", missing)
    x, y = _speech_st(t)[path[:, 0]], _speech_st(a)[path[:, 1]]
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < MIN_PAIRS:
        return _unmeasurable("melody", "melody", f"only {int(both.sum())} aligned frames are voiced in both")
    x, y = x[both], y[both]
    time, time_a = t.contours.time_s[path[both, 0]], a.contours.time_s[path[both, 1]]
    sx, sy = float(np.std(x)), float(np.std(y))
    flat = (sx < FLAT_STD_ST, sy < FLAT_STD_ST)
    if any(flat):  # no shape to correlate (and a correlation of constants is NaN)
        measure, feedback = _FLAT[flat]
        return Score("melody", 100.0 if all(flat) else 0.0,
                     f"{measure}: sd {sx:.1f} st (target) vs {sy:.1f} st (yours)", feedback)
    r = float(np.corrcoef(x, y)[0, 1])
    score = 100.0 * max(0.0, r)
    feedback = ("Your melody follows the target's closely." if score >= GOOD
                else _melody_hint((x - x.mean()) / sx, (y - y.mean()) / sy, x, y, time, time_a))
    return Score("melody", score, f"contour correlation {r:.2f}", feedback)


_FLAT = {(True, True): ("both contours flat", "Like the target, you keep your voice on one level."),
         (False, True): ("your contour is flat",
                         "Your voice stays on one note: let it rise and fall like the target's."),
         (True, False): ("the target's contour is flat",
                         "The target stays on one note, but your voice moves up and down: keep it level.")}


def _melody_hint(zx, zy, x, y, time, time_a) -> str:
    """Where the shapes (z-scores: range is scored apart) differ most, by thirds of the target's
    time, and how: opposite movements first, else higher or lower. Each voice's movement is
    measured on its own clock (`time` the target's, `time_a` the attempt's, along the path): a
    fall the alignment squeezed into one target frame is still the attempt's fall."""
    third = np.clip(((time - time[0]) / max(time[-1] - time[0], 1e-9) * 3).astype(int), 0, 2)
    gaps = [np.mean(np.abs(zy - zx)[third == k]) * (END_WEIGHT if k == 2 else 1.0)
            if (third == k).sum() >= 3 else -1.0 for k in range(3)]
    k = int(np.argmax(gaps))
    sel = third == k
    theirs, yours = _movement(time[sel], x[sel]), _movement(time_a[sel], y[sel])
    if theirs != yours:
        return f"Your voice {yours} {THIRDS[k]} where the target {theirs}."
    side = "higher" if np.mean(zy[sel] - zx[sel]) > 0 else "lower"
    return (f"{THIRDS[k].capitalize()} your voice goes {side} than the target's, compared with "
            "the rest of the sentence.")


def _movement(time: np.ndarray, st: np.ndarray) -> str:
    span = time[-1] - time[0]
    change = np.polyfit(time, st, 1)[0] * span if span > 0 else 0.0
    return "rises" if change >= MOVE_ST else "falls" if change <= -MOVE_ST else "stays level"


def _range(t: ProsodyReport, a: ProsodyReport) -> Score:
    if missing := _no_pitch(t, a):
        return _unmeasurable("range", "pitch range", missing)
    rt, ra = t.pitch.range_st, a.pitch.range_st
    return _ratio_score("range", max(ra, MIN_RANGE_ST) / max(rt, MIN_RANGE_ST),
                        f"pitch range {rt:.1f} st (target) vs {ra:.1f} st (yours)",
                        "Your pitch range matches the target's.",
                        "Your pitch range is narrower than the target's: let your voice move more.",
                        "Your pitch range is wider than the target's: keep your voice steadier.")


def _tempo(t: ProsodyReport, a: ProsodyReport) -> Score:
    if missing := _no_speech(t, a):
        return _unmeasurable("tempo", "speaking rate", missing)
    st, sa = t.rate.speech_s, a.rate.speech_s
    return _ratio_score("tempo", st / sa, f"speaking time {st:.2f} s (target) vs {sa:.2f} s (yours)",
                        "Your speaking rate matches the target's.",
                        "You speak more slowly than the target: speed up.",
                        "You speak faster than the target: slow down.")


def _loudness(t: ProsodyReport, a: ProsodyReport) -> Score:
    dt, da = _spread_db(t), _spread_db(a)
    if dt is None or da is None:
        who = "the target" if dt is None else "your recording"
        return _unmeasurable("loudness", "loudness", f"there is too little voiced speech in {who}")
    return _ratio_score("loudness", max(da, MIN_SPREAD_DB) / max(dt, MIN_SPREAD_DB),
                        f"loudness spread {dt:.1f} dB (target) vs {da:.1f} dB (yours)",
                        "Your loudness rises and falls like the target's.",
                        "Your loudness varies less than the target's: stress the strong syllables more.",
                        "Your loudness varies more than the target's: keep your voice more even.")


def _ratio_score(name: str, ratio: float, measure: str, same: str, less: str, more: str) -> Score:
    """`ratio` > 1: the attempt has more of it (range, pace, spread) than the target."""
    score = ratio_score(ratio)
    feedback = same if score >= GOOD else more if ratio > 1 else less
    return Score(name, score, f"{measure}, ratio {min(ratio, 1 / ratio):.2f}", feedback)


def _spread_db(report: ProsodyReport) -> float | None:
    c = report.contours
    voiced = c.speech & np.isfinite(c.f0_hz)
    if voiced.sum() < MIN_PAIRS:
        return None
    low, high = np.percentile(c.intensity_db[voiced], [10, 90])
    return float(high - low)


def _pauses(t: ProsodyReport, a: ProsodyReport) -> Score:
    if missing := _no_speech(t, a):
        return _unmeasurable("pauses", "pauses", missing)
    qt, qa = _pause_share(t), _pause_share(a)
    score = float(100.0 * max(0.0, 1.0 - abs(qa - qt) / PAUSE_SHARE_SPAN))
    nt, na = t.rate.pause_count, a.rate.pause_count
    measure = (f"pausing {100 * qt:.0f}% of the time, {_count(nt)} (target) vs "
               f"{100 * qa:.0f}%, {_count(na)} (yours)")
    if score >= GOOD:
        feedback = ("Your pauses match the target's." if nt or na
                    else "Like the target, you speak without pausing.")
    elif na != nt:
        feedback = (f"The target makes {_count(nt)}, you make {_count(na)}: pause "
                    + ("only where the target does." if na > nt else "where the target does."))
    else:
        feedback = ("Your pauses are longer than the target's: keep them short." if qa > qt
                    else "Your pauses are shorter than the target's: take your time.")
    return Score("pauses", score, measure, feedback)


def _pause_share(report: ProsodyReport) -> float:
    return report.rate.pause_s / (report.rate.speech_s + report.rate.pause_s)


def _count(n: int) -> str:
    return {0: "no pause", 1: "one pause"}.get(n, f"{n} pauses")


def _unmeasurable(name: str, what: str, why: str) -> Score:
    return Score(name, None, why, f"The {what} cannot be compared: {why}.")


def _no_pitch(t: ProsodyReport, a: ProsodyReport) -> str | None:
    bad = [w for r, w in ((t, "the target"), (a, "your recording")) if not r.pitch.reliable]
    return f"there is no reliable pitch in {bad[0]}" if bad else None


def _no_speech(t: ProsodyReport, a: ProsodyReport) -> str | None:
    bad = [w for r, w in ((t, "the target"), (a, "your recording")) if not r.rate.speech_s]
    return f"no speech was found in {bad[0]}" if bad else None


def _report(x: Clip | ProsodyReport, role: str) -> ProsodyReport:
    if not isinstance(x, (Clip, ProsodyReport)):
        raise TypeError(f"the {role} must be a Clip or a ProsodyReport; got {type(x).__name__}")
    if x.duration_s > MAX_SECONDS:
        raise ValueError(f"the {role} clip is {x.duration_s:.1f} s long; imitation scoring takes "
                         f"clips of up to {MAX_SECONDS:g} s")
    return x if isinstance(x, ProsodyReport) else analyze(x)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 1)
