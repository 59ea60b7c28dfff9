"""What a phonetician would measure in a clip, with Praat: `analyze(clip) -> ProsodyReport`.

    from engine.audio import load_audio
    from engine.prosody import analyze
    report = analyze(load_audio("speech.wav"))
    report.pitch.median_hz, report.intonation.label, report.to_dict()

Contours share one 10 ms time axis (frame centres 5, 15, 25 ... ms). Speech activity, the energy
level and the pitch statistics follow the reference labelling pipeline (docs/paper.md §3); the rate
without a transcript is the syllable-nuclei method of de Jong & Wempe (2009, Behavior Research
Methods 41:385), intensity peaks in voiced speech. Unmeasurable values are None, never guesses:
silence has no F0, no energy level and intonation "too_short".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.audio import DBFS_FLOOR, Clip
from engine.prosody.intonation import Intonation, classify
from engine.prosody.levels import DEFAULT_NORMS, LevelNorms, Levels
from engine.prosody.pitch import FRAME_STEP_S, frame_times, track_pitch

# Speech activity (docs/paper.md §3): 25 ms RMS frames every 10 ms, threshold relative to the loud end
ACTIVITY_FRAME_S = 0.025
BELOW_REFERENCE_DB = 35.0  # threshold = p95 frame level - 35 dB ...
SPREAD_DB, ABOVE_FLOOR_DB = 20.0, 6.0  # ... raised to p5 + 6 dB when p95 - p5 > 20 dB ...
MAX_BELOW_REFERENCE_DB = 15.0  # ... and never closer than 15 dB to the reference
FILL_GAP_S, MIN_RUN_S = 0.06, 0.05  # fill gaps shorter than 60 ms, drop runs shorter than 50 ms
PAUSE_MIN_S = 0.3  # a silent gap inside the utterance this long is a pause (de Jong & Wempe 2009)
MIN_RATE_SPEECH_S = 0.5  # less speech than this gets a rate but no slow/normal/fast label
# Speech is modulated: syllables rise tens of dB above the gaps between them. A clip whose speech
# level stands less than ABOVE_FLOOR_DB (the pipeline's own minimum spread, above) over its
# noise floor has no such rhythm: a steady tone, hum or noise. It is measured (a tone's pitch is
# a fact) but not described as a voice: no low/normal/high levels, "no speech found" in words.
MIN_SPEECH_SNR_DB = ABOVE_FLOOR_DB
# Pitch reliability (docs/paper.md §3); an unreliable pitch gets statistics but no level
MIN_VOICED_FRAMES, MIN_VOICED_FRACTION = 25, 0.2
# Syllable nuclei (de Jong & Wempe 2009 defaults)
NUCLEI_SILENCE_DB = -25.0  # peaks must be within 25 dB of the 99th-percentile speech intensity
NUCLEI_MIN_DIP_DB = 2.0  # and stand 2 dB above the dip that separates them from the next peak
NUCLEI_MIN_PITCH_HZ = 50.0  # Praat intensity window = 3.2 / 50 Hz = 64 ms
# Praat measures intensity in dB re 2e-5 Pa, reading samples as pascals: full scale = 93.98 dB
PRAAT_DB_AT_FULL_SCALE = 20.0 * np.log10(1.0 / 2e-5)
# Jitter and shimmer, Praat's standard arguments (period 0.1-20 ms, factor 1.3, amplitude 1.6),
# on the pitch analysis' 4 kHz waveform: 10x cheaper than at 16 kHz, and on 10 s of espeak-ng
# speech jitter 1.088 % vs 1.116 %, shimmer 19.30 % vs 19.05 % (measured here)
PERIOD_FLOOR_S, PERIOD_CEILING_S, MAX_PERIOD_FACTOR, MAX_AMPLITUDE_FACTOR = 1e-4, 0.02, 1.3, 1.6


@dataclass(frozen=True)
class PitchStats:
    median_hz: float | None  # over voiced frames inside speech
    p5_hz: float | None
    p95_hz: float | None
    range_st: float | None  # 12 * log2(p95 / p5)
    std_st: float | None  # standard deviation of F0 in semitones re the median
    voiced_fraction: float | None  # voiced frames / speech frames
    reliable: bool  # >= 25 voiced frames and >= 20 % of speech voiced
    floor_hz: float  # the second-pass search range used
    ceiling_hz: float


@dataclass(frozen=True)
class EnergyStats:
    level_dbfs: float | None  # RMS over speech frames only, dB re full scale
    noise_floor_dbfs: float  # median of non-speech frames, or p5 of all frames without pauses
    snr_db: float | None  # level - noise floor


@dataclass(frozen=True)
class RateStats:
    syllables_per_s: float | None  # nuclei / (last speech end - first speech start)
    articulation_rate_sps: float | None  # nuclei / speaking time, pauses excluded
    syllable_count: int
    speech_s: float  # seconds of detected speech
    pause_count: int  # silent gaps >= PAUSE_MIN_S inside the utterance
    pause_s: float  # their total duration
    pauses: tuple[tuple[float, float], ...]  # (start_s, end_s) of each pause


@dataclass(frozen=True)
class VoiceQuality:
    jitter_local: float | None  # mean absolute period difference / mean period (fraction)
    shimmer_local: float | None  # mean absolute amplitude difference / mean amplitude (fraction)
    hnr_db: float | None  # harmonics-to-noise ratio from Praat's autocorrelation strength


@dataclass(frozen=True, eq=False)
class Contours:
    time_s: np.ndarray  # frame centres, 10 ms apart
    f0_hz: np.ndarray  # NaN where unvoiced (speech or not)
    f0_st: np.ndarray  # semitones re the median F0 of speech; NaN where unvoiced
    intensity_db: np.ndarray  # Praat intensity in dB re full scale, floored at DBFS_FLOOR
    speech: np.ndarray  # bool speech-activity mask


@dataclass(frozen=True, eq=False)
class ProsodyReport:
    duration_s: float
    sample_rate_hz: int
    pitch: PitchStats
    energy: EnergyStats
    rate: RateStats
    intonation: Intonation
    voice: VoiceQuality
    levels: Levels
    contours: Contours
    speech_found: bool = True  # the level is modulated like speech (MIN_SPEECH_SNR_DB)

    def to_dict(self, contours: bool = True) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None) in the CLI's `--json` layout."""
        out: dict[str, Any] = {
            "duration_s": round(self.duration_s, 4),
            "sample_rate_hz": self.sample_rate_hz,
            "pitch": _clean(asdict(self.pitch)),
            "energy": _clean(asdict(self.energy)),
            "rate": _clean(asdict(self.rate)),
            "intonation": self.intonation.to_dict(),
            "voice": _clean(asdict(self.voice), 4),
            "levels": asdict(self.levels),
            "speech_found": self.speech_found,
        }
        if contours:
            c = self.contours
            out["contours"] = {"time_s": _list(c.time_s, 3), "f0_hz": _list(c.f0_hz, 2),
                               "f0_st": _list(c.f0_st, 2), "intensity_db": _list(c.intensity_db, 1),
                               "speech": [bool(v) for v in c.speech]}
        return out


def analyze(clip: Clip, norms: LevelNorms = DEFAULT_NORMS, gender: str | None = None) -> ProsodyReport:
    """Measure pitch, energy, rate, intonation and voice quality of a clip with Praat. `norms`
    (and the speaker's `gender`, if known) turn measurements into low/normal/high levels."""
    import parselmouth

    x, sr = clip.samples, clip.sample_rate_hz
    times = frame_times(clip.duration_s)
    frame_db = frame_levels(x, sr, times)
    speech = speech_mask(frame_db) if not clip.silent else np.zeros(len(times), bool)

    track = track_pitch(x, sr, times)
    f0 = track.f0_hz
    f0_speech = np.where(speech, f0, np.nan)
    pitch = _pitch_stats(f0_speech, speech, track.floor_hz, track.ceiling_hz)
    f0_st = 12.0 * np.log2(f0 / pitch.median_hz) if pitch.median_hz else np.full_like(f0, np.nan)

    intensity = parselmouth.Sound(x.astype(np.float64), sr).to_intensity(
        minimum_pitch=NUCLEI_MIN_PITCH_HZ, time_step=FRAME_STEP_S, subtract_mean=False)
    intensity_db = _intensity_on_axis(intensity, times)

    energy = _energy(frame_db, speech)
    rate = _rate(times, speech, intensity_db, f0)
    intonation = classify(times, f0_speech, long_pauses=rate.pause_count, frame_s=FRAME_STEP_S)
    voice = _voice_quality(track, f0_speech, pitch.reliable)
    speech_found = energy.snr_db is not None and energy.snr_db >= MIN_SPEECH_SNR_DB
    levels = norms.levels(pitch.median_hz if pitch.reliable else None, energy.level_dbfs,
                          rate.articulation_rate_sps if rate.speech_s >= MIN_RATE_SPEECH_S else None,
                          gender) if speech_found else Levels(None, None, None)
    return ProsodyReport(
        duration_s=clip.duration_s, sample_rate_hz=sr, pitch=pitch, energy=energy, rate=rate,
        intonation=intonation, voice=voice, levels=levels,
        contours=Contours(times, f0, f0_st, intensity_db, speech), speech_found=speech_found)


def frame_levels(x: np.ndarray, sr: int, times_s: np.ndarray) -> np.ndarray:
    """RMS level (dBFS, floored at DBFS_FLOOR) of 25 ms frames centred on `times_s`, which must
    be the 10 ms frame centres of `frame_times` (summed from 2.5 ms blocks: one pass, no copies
    per frame)."""
    block = sr // 400  # 2.5 ms: divides both the 25 ms window and the 10 ms hop
    per_window, per_hop = 10, 4  # blocks per 25 ms window and per 10 ms hop
    lead = 3 * block  # first window: centre 5 ms - 12.5 ms = -7.5 ms = 3 blocks before the start
    n_blocks = (len(times_s) - 1) * per_hop + per_window
    padded = np.zeros(n_blocks * block, np.float32)
    body = x[: n_blocks * block - lead]
    padded[lead:lead + len(body)] = body
    energy = np.square(padded).reshape(n_blocks, block).sum(axis=1, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    starts = np.arange(len(times_s)) * per_hop
    power = (csum[starts + per_window] - csum[starts]) / (per_window * block)
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), DBFS_FLOOR)


def speech_mask(frame_db: np.ndarray) -> np.ndarray:
    """Speech-activity mask over frames, by the reference pipeline's relative threshold."""
    audible = frame_db > DBFS_FLOOR + 1.0  # digital silence never sets the percentiles
    if audible.sum() < 2:
        return np.zeros(len(frame_db), bool)
    p5, p95 = np.percentile(frame_db[audible], [5, 95])
    threshold = p95 - BELOW_REFERENCE_DB
    if p95 - p5 > SPREAD_DB:
        threshold = max(threshold, p5 + ABOVE_FLOOR_DB)
    threshold = min(threshold, p95 - MAX_BELOW_REFERENCE_DB)
    mask = frame_db > threshold
    mask = _fill_runs(mask, False, int(round(FILL_GAP_S / FRAME_STEP_S)), inner_only=True)
    return _fill_runs(mask, True, int(round(MIN_RUN_S / FRAME_STEP_S)))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame indices, end exclusive, of each run of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _fill_runs(mask: np.ndarray, value: bool, shorter_than: int, inner_only: bool = False):
    """Flip runs of `value` shorter than `shorter_than` frames (only those between runs of the
    other value when `inner_only`)."""
    out = mask.copy()
    target = mask if value else ~mask
    for a, b in runs(target):
        if b - a < shorter_than and not (inner_only and (a == 0 or b == len(mask))):
            out[a:b] = not value
    return out


def _pitch_stats(f0_speech: np.ndarray, speech: np.ndarray, floor: float, ceiling: float):
    voiced = np.isfinite(f0_speech)
    n_voiced, n_speech = int(voiced.sum()), int(speech.sum())
    fraction = n_voiced / n_speech if n_speech else None
    if n_voiced < 2:
        return PitchStats(None, None, None, None, None, fraction, False, floor, ceiling)
    f = f0_speech[voiced]
    median = float(np.median(f))
    p5, p95 = (float(v) for v in np.percentile(f, [5, 95]))
    st = 12.0 * np.log2(f / median)
    reliable = n_voiced >= MIN_VOICED_FRAMES and (fraction or 0.0) >= MIN_VOICED_FRACTION
    return PitchStats(median, p5, p95, float(12.0 * np.log2(p95 / p5)), float(np.std(st)),
                      fraction, bool(reliable), floor, ceiling)


def _intensity_on_axis(intensity, times: np.ndarray) -> np.ndarray:
    values = intensity.values[0]
    if len(values) == 0:
        return np.full(len(times), DBFS_FLOOR)
    db = np.interp(times, intensity.xs(), values) - PRAAT_DB_AT_FULL_SCALE
    return np.maximum(db, DBFS_FLOOR)


def _energy(frame_db: np.ndarray, speech: np.ndarray) -> EnergyStats:
    quiet = frame_db[~speech]
    floor = float(np.median(quiet)) if quiet.size >= 10 else float(np.percentile(frame_db, 5))
    if not speech.any():
        return EnergyStats(None, floor, None)
    level = float(10.0 * np.log10(np.mean(10.0 ** (frame_db[speech] / 10.0))))
    return EnergyStats(level, floor, level - floor)


def _rate(times, speech, intensity_db, f0) -> RateStats:
    spans = runs(speech)
    if not spans:
        return RateStats(None, None, 0, 0.0, 0, 0.0, ())
    speech_s = float(speech.sum() * FRAME_STEP_S)
    gaps = [(b1, a2) for (_, b1), (a2, _) in zip(spans, spans[1:])]
    pauses = tuple((round(b * FRAME_STEP_S, 3), round(a * FRAME_STEP_S, 3))
                   for b, a in gaps if (a - b) * FRAME_STEP_S >= PAUSE_MIN_S - 1e-9)
    nuclei = syllable_nuclei(intensity_db, speech, np.isfinite(f0))
    span_s = (spans[-1][1] - spans[0][0]) * FRAME_STEP_S
    return RateStats(
        syllables_per_s=len(nuclei) / span_s, articulation_rate_sps=len(nuclei) / speech_s,
        syllable_count=len(nuclei), speech_s=speech_s, pause_count=len(pauses),
        pause_s=round(sum(b - a for a, b in pauses), 3), pauses=pauses)


def syllable_nuclei(intensity_db: np.ndarray, speech: np.ndarray, voiced: np.ndarray) -> list[int]:
    """Frame indices of syllable nuclei: intensity peaks in speech within 25 dB of the loud end,
    separated from the next peak by a dip of at least 2 dB, and voiced (de Jong & Wempe 2009)."""
    if not speech.any():
        return []
    threshold = np.percentile(intensity_db[speech], 99) + NUCLEI_SILENCE_DB
    y = intensity_db
    inner = (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])
    peaks = [i for i in (np.flatnonzero(inner) + 1) if speech[i] and y[i] > threshold]
    kept = []
    for k, p in enumerate(peaks):
        nxt = peaks[k + 1] if k + 1 < len(peaks) else len(y)
        dip = y[p:nxt].min() if nxt > p else y[p]
        if y[p] - dip > NUCLEI_MIN_DIP_DB and voiced[p]:
            kept.append(p)
    return kept


def _voice_quality(track, f0_speech: np.ndarray, reliable: bool) -> VoiceQuality:
    voiced = np.isfinite(f0_speech)
    if not reliable or track.pitch is None:
        return VoiceQuality(None, None, None)
    from parselmouth.praat import call

    r = np.clip(track.strength[voiced], 1e-6, 1 - 1e-6)
    hnr = float(np.mean(10.0 * np.log10(r / (1.0 - r))))
    points = call([track.sound, track.pitch], "To PointProcess (cc)")
    jitter = call(points, "Get jitter (local)", 0, 0, PERIOD_FLOOR_S, PERIOD_CEILING_S,
                  MAX_PERIOD_FACTOR)
    shimmer = call([track.sound, points], "Get shimmer (local)", 0, 0, PERIOD_FLOOR_S,
                   PERIOD_CEILING_S, MAX_PERIOD_FACTOR, MAX_AMPLITUDE_FACTOR)
    return VoiceQuality(_finite(jitter), _finite(shimmer), hnr)


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _clean(d: dict, nd: int = 3) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float):
            out[k] = round(v, nd) if np.isfinite(v) else None
        elif isinstance(v, (tuple, list)):
            out[k] = [list(p) if isinstance(p, tuple) else p for p in v]
        else:
            out[k] = v
    return out


def _list(a: np.ndarray, nd: int) -> list:
    return [round(float(v), nd) if np.isfinite(v) else None for v in a]
