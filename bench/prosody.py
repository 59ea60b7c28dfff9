"""Benchmark: `engine.prosody.analyze` vs the reference pipeline's pitch tracker (librosa pYIN).

    python bench/prosody.py                    # 1, 10, 60, 300 s clips (pYIN on 300 s takes minutes)
    python bench/prosody.py --seconds 1 10     # a quicker table

Runs on one core (CPU affinity and single-threaded BLAS), on espeak-ng speech (sentences with
varied pitch and rate, concatenated to length; engine.prosody.synth.speechlike if espeak-ng is missing).
Prints the median wall time of the whole `analyze` (decode excluded: the clip is in memory) and
of pYIN (55-500 Hz, frame 1024, hop 160 at 16 kHz, as the reference pipeline runs it) on the
same clips, and their ratio. Target (issue 2): 10 s in <= 50 ms, >= 100x faster than pYIN;
since issue 12 the HNR is Praat's Harmonicity (cc), whose cost grows for low voices (these are:
see the README's Speed section).
librosa is a bench-only dependency (requirements-dev.txt).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import statistics
import time

import numpy as np

from engine.audio import SAMPLE_RATE_HZ, from_array, resample
from engine.prosody import analyze, synth

SENTENCES = [
    "The quick brown fox jumps over the lazy dog, and nobody seems to mind at all.",
    "Why would anyone leave the door open on such a cold and windy night?",
    "I told you three times already: the meeting starts at nine, not at ten!",
    "She wandered slowly through the market, looking at apples, pears and plums.",
]
REPEATS = {1: 30, 10: 15, 60: 5, 300: 3}


def speech(seconds: float) -> np.ndarray:
    """`seconds` of 16 kHz speech: espeak-ng sentences in varied voices, tiled to length."""
    if not synth.espeak_available():
        return synth.speechlike(seconds)
    parts = []
    for i, text in enumerate(SENTENCES):
        x, sr = synth.espeak(text, pitch=30 + 15 * i, rate_wpm=150 + 20 * i,
                             pitch_range_pct=60 + 40 * i)
        parts.append(resample(x, sr, SAMPLE_RATE_HZ))
    whole = np.concatenate(parts)
    reps = int(np.ceil(seconds * SAMPLE_RATE_HZ / len(whole)))
    return np.tile(whole, reps)[: int(seconds * SAMPLE_RATE_HZ)]


def median_time(fn, repeats: int, warm: bool = True) -> float:
    if warm:
        fn()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pyin(x: np.ndarray) -> None:
    import librosa

    librosa.pyin(x, fmin=55, fmax=500, sr=SAMPLE_RATE_HZ, frame_length=1024, hop_length=160)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[1, 10, 60, 300])
    ap.add_argument("--no-pyin", action="store_true", help="time analyze only")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    source = "espeak-ng speech" if synth.espeak_available() else "synthetic speech-like audio"
    print(f"analyze vs pYIN, one core, {source}, median wall time")
    print(f"{'clip':>7} | {'analyze':>10} | {'x real time':>11} | {'pYIN':>9} | {'ratio':>7}")
    results = {}
    for seconds in args.seconds:
        clip = from_array(speech(seconds), SAMPLE_RATE_HZ, max_seconds=seconds + 1)
        t_analyze = median_time(lambda clip=clip: analyze(clip), REPEATS.get(int(seconds), 3))
        row = f"{seconds:>6g}s | {t_analyze * 1000:>7.1f} ms | {seconds / t_analyze:>10.0f}x |"
        if args.no_pyin:
            print(row + f" {'-':>9} | {'-':>7}", flush=True)
        else:
            pyin(clip.samples[:SAMPLE_RATE_HZ])  # compile numba's kernels once, outside the timing
            t_pyin = median_time(lambda clip=clip: pyin(clip.samples), 3 if seconds <= 1 else 1, warm=False)
            print(row + f" {t_pyin:>7.2f} s | {t_pyin / t_analyze:>6.0f}x", flush=True)
            results[seconds] = (t_analyze, t_pyin)
        results.setdefault(seconds, (t_analyze, None))
    if 10 in results:
        t_a, t_p = results[10]
        verdict = "met" if t_a <= 0.050 else "MISSED"
        ratio = f", {t_p / t_a:.0f}x pYIN (target >= 100x)" if t_p else ""
        print(f"target: 10 s analyzed in {t_a * 1000:.1f} ms (<= 50 ms: {verdict}){ratio}")


if __name__ == "__main__":
    main()
