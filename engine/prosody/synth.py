"""Signals whose prosody is known: the ground truth for tests, benchmarks and example data.

- `harmonic(f0_hz, ...)`: a voiced, speech-like signal with an exact F0 contour (phase
  accumulation), chosen harmonics, spectral tilt, and syllable-like amplitude modulation.
- `speechlike(seconds)`: syllables with a declining, wandering F0 and pauses, for benchmarks.
- `syllables(n, ...)`: exactly n syllables, optionally with the intensity ripples inside each
  vowel that expressive speech has (the truth for syllable counting).
- `espeak(text, ...)`: real synthetic speech from espeak-ng (Debian package `espeak-ng`), with
  its pitch, range, rate and amplitude controls.

    python -m engine.prosody.synth "Hello there" out.wav --pitch 70 --rate 200
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from engine.audio import SAMPLE_RATE_HZ

RATE = SAMPLE_RATE_HZ  # test signals are made at the analysis rate


def harmonic(f0_hz, duration_s: float = 2.0, *, sr: int = RATE, harmonics=range(1, 11),
             tilt_db_per_octave: float = -6.0, syllable_hz: float = 0.0, level_dbfs: float = -20.0,
             jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """A harmonic complex with fundamental `f0_hz` (a number, or an array of per-sample values,
    or a function of time in seconds). `harmonics` lists the partials present (leave out 1 for a
    missing fundamental); `syllable_hz` > 0 modulates the amplitude like syllables; the result's
    RMS is `level_dbfs`."""
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    if callable(f0_hz):
        f = np.asarray(f0_hz(t), dtype=np.float64)
    else:
        f = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,)).copy()
    if jitter:
        f *= 1.0 + jitter * np.random.default_rng(seed).standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = np.zeros(n)
    for k in harmonics:
        amp = 10 ** (tilt_db_per_octave * np.log2(k) / 20)
        x += amp * np.sin(k * phase) * (k * f < sr / 2)
    if syllable_hz > 0:
        x *= 0.55 - 0.45 * np.cos(2 * np.pi * syllable_hz * t)
    return scale_to(x, level_dbfs)


def speechlike(seconds: float, *, sr: int = RATE, f0_hz: float = 120.0, seed: int = 0,
               syllable_hz: float = 4.5, pause_every_s: float = 2.5) -> np.ndarray:
    """Syllable-modulated voiced sound with a declining, wandering F0, a 0.35 s pause every
    `pause_every_s` seconds and a little breath noise: a stand-in for speech in benchmarks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    knots = np.arange(0.0, seconds + 1.0, 0.25)
    wander = np.interp(t, knots, rng.normal(0.0, 1.5, len(knots)))
    phrase = (t % pause_every_s) / pause_every_s
    f0 = f0_hz * 2 ** ((wander + 3 * (0.5 - phrase)) / 12)
    x = harmonic(f0, seconds, sr=sr, syllable_hz=syllable_hz, level_dbfs=-20)
    x[(t % pause_every_s) > pause_every_s - 0.35] = 0.0
    x += 10 ** (-60 / 20) * rng.standard_normal(len(x))
    return x.astype(np.float32)


def syllables(n: int, *, f0_hz: float = 220.0, syllable_s: float = 0.22, gap_s: float = 0.09,
              ripple: float = 0.0, ripple_hz: float = 13.0, vibrato_st: float = 2.0,
              gap_db: float = -30.0, level_dbfs: float = -20.0, sr: int = RATE) -> np.ndarray:
    """`n` syllables (a voiced sine-shaped swell of `syllable_s` each, `gap_s` between them at
    `gap_db` re the peak, 0.2 s of silence either side) whose F0 swings +-`vibrato_st` semitones at 1.7 Hz.
    `ripple` > 0 modulates the level inside every syllable by 1 +- ripple at `ripple_hz`, as F0
    moving harmonics across formants does in expressive speech (0.45: an 8 dB ripple)."""
    period = syllable_s + gap_s
    duration = n * period + 0.4
    t = np.arange(int(round(duration * sr))) / sr
    phase = (t - 0.2) % period
    spoken = (t >= 0.2) & (t < 0.2 + n * period)
    swell = np.sin(np.pi * np.clip(phase / syllable_s, 0.0, 1.0)) ** 0.7
    env = np.where(spoken & (phase < syllable_s), swell, 0.0) * (1 + ripple * np.sin(2 * np.pi * ripple_hz * t))
    env += 10 ** (gap_db / 20) * spoken
    x = harmonic(lambda tt: f0_hz * 2 ** (vibrato_st * np.sin(2 * np.pi * 1.7 * tt) / 12), duration,
                 sr=sr) * env
    return scale_to(x, level_dbfs)


def scale_to(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Scale a signal so that its RMS is `level_dbfs` (float32)."""
    rms = np.sqrt(np.mean(np.square(x)))
    return (x * (10 ** (level_dbfs / 20) / max(rms, 1e-12))).astype(np.float32)


def silence(seconds: float, sr: int = RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), np.float32)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, *, voice: str = "en-us", pitch: int = 50, pitch_range_pct: int = 100,
           rate_wpm: int = 175, amplitude: int = 100,
           emphasis: int | None = None) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; returns (float32 samples, sample rate). espeak's own units:
    pitch 0-99 (its default 50 is ~100 Hz for en-us), rate in words per minute, amplitude 0-200;
    the pitch range is an SSML percentage of espeak's default (25 % is near-monotone, 200 %
    lively), since the espeak-ng command line has no range option. `emphasis` stresses the word
    at that index (of the space-separated words) with SSML's <emphasis>: espeak-ng says it
    higher, louder and longer."""
    from xml.sax.saxutils import escape

    import soundfile as sf

    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        words = [escape(w) for w in text.split(" ")]
        if emphasis is not None:
            words[emphasis] = f"<emphasis>{words[emphasis]}</emphasis>"
        ssml = f'<speak><prosody range="{int(pitch_range_pct)}%">{" ".join(words)}</prosody></speak>'
        done = subprocess.run(["espeak-ng", "-m", "-v", voice, "-p", str(pitch), "-s", str(rate_wpm),
                               "-a", str(amplitude), "-w", str(out), ssml],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not out.exists():  # espeak-ng exits 0 on some bad options
            raise RuntimeError(f"espeak-ng failed: {done.stderr.strip() or done.returncode}")
        x, sr = sf.read(str(out), dtype="float32")
    return x, sr


def main() -> None:
    import argparse

    import soundfile as sf

    ap = argparse.ArgumentParser(description="Speak a sentence with espeak-ng into a WAV file.")
    ap.add_argument("text")
    ap.add_argument("out")
    ap.add_argument("--pitch", type=int, default=50)
    ap.add_argument("--range-pct", type=int, default=100, dest="pitch_range_pct")
    ap.add_argument("--rate", type=int, default=175)
    ap.add_argument("--amplitude", type=int, default=100)
    a = ap.parse_args()
    x, sr = espeak(a.text, pitch=a.pitch, pitch_range_pct=a.pitch_range_pct, rate_wpm=a.rate,
                   amplitude=a.amplitude)
    sf.write(a.out, x, sr)


if __name__ == "__main__":
    main()
