"""Benchmark: the teacher's tools: imitation scoring, a class at once, and the live trace.

    python bench/classroom.py                        # espeak-ng speech made on the spot
    python bench/classroom.py --folder CLIPS/        # also a folder of real recordings (not copied)

Prints, on one core (CPU affinity and single-threaded BLAS):
- imitate: `engine.imitate.compare` on two prepared reports of a clip and its PSOLA copy 1.3x
  faster, 2.5 s to 40 s (the alignment and scores only: each analysis is `analyze`'s cost,
  bench/prosody.py) and with the two analyses included;
- batch: `engine.batch.collect` + `analyse` over N clips zipped together, per clip (unpacking,
  decoding and analysis);
- live: the app's `live_trace` handler per 0.3 s microphone chunk once its 8 s window is full:
  the server's work behind each live update (~3 a second per recording user).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import statistics
import tempfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from engine.audio import SAMPLE_RATE_HZ, from_array, resample, write_wav
from engine.prosody import analyze, synth

TEXT = ("The weather turned warm, so we walked down to the harbour and watched the boats come in "
        "before dinner, talking about nothing in particular.")


def speech(seconds: float):
    """espeak-ng speech (or synth.speechlike without it), repeated to `seconds`, as a Clip."""
    if synth.espeak_available():
        x, sr = synth.espeak(TEXT)
        x = resample(x, sr, SAMPLE_RATE_HZ)
    else:
        x = synth.speechlike(seconds)
    reps = int(np.ceil(seconds * SAMPLE_RATE_HZ / len(x)))
    return from_array(np.tile(x, reps)[: int(seconds * SAMPLE_RATE_HZ)], SAMPLE_RATE_HZ)


def timed(fn, repeats: int) -> float:
    """Median wall time of `fn()` in ms."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_imitate(seconds: list[float]) -> None:
    from engine.imitate import compare
    from engine.prosody.manipulate import manipulate

    print("imitate: a clip against its PSOLA copy 1.3x faster")
    print(f"{'seconds':>8} {'compare ms':>11} {'with analyses ms':>17} {'tempo score':>12}")
    for s in seconds:
        target = speech(s)
        attempt = manipulate(target, tempo=1.3)
        t, a = analyze(target), analyze(attempt)
        align_ms = timed(lambda t=t, a=a: compare(t, a), 5)
        whole_ms = timed(lambda c=target, d=attempt: compare(c, d), 3)
        print(f"{s:>8g} {align_ms:>11.1f} {whole_ms:>17.1f} {compare(t, a).to_dict()['tempo']:>12}")


def bench_batch(n: int, folder: Path | None) -> None:
    from engine.batch import analyse, collect

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if folder is not None:
            clips = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg"))
            label = f"{len(clips)} recordings from {folder}"
        else:
            clips = []
            for i in range(n):
                path = tmp / f"clip{i:03d}.wav"
                write_wav(path, speech(2.0 + (i % 5)))
                clips.append(path)
            label = f"{n} espeak-ng clips of 2-6 s"
        archive = tmp / "class.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in clips:
                zf.write(p, f"class/{p.name}")
        t0 = time.perf_counter()
        items, failed = collect([archive], tmp / "work")
        rows, broken = analyse(items)
        total = time.perf_counter() - t0
        print(f"batch: {label}, zipped: {len(rows)} rows, {len(failed) + len(broken)} failed, "
              f"{total:.2f} s in all, {1000 * total / max(len(items), 1):.1f} ms per clip")


def bench_live() -> None:
    from app.handlers import LIVE_WINDOW_S, Handlers
    from app.service import ModelService

    h = Handlers(ModelService("none", enabled=False), max_seconds=120)
    x = speech(LIVE_WINDOW_S + 6).samples
    chunk = int(0.3 * SAMPLE_RATE_HZ)
    session = SimpleNamespace(session_hash="bench")  # what Gradio passes as the request
    h.live_start(session)
    times = []
    for start in range(0, len(x) - chunk, chunk):
        t0 = time.perf_counter()
        h.live_trace((SAMPLE_RATE_HZ, x[start:start + chunk]), session)
        if start / SAMPLE_RATE_HZ >= LIVE_WINDOW_S:  # the window is full: the steady cost
            times.append((time.perf_counter() - t0) * 1000)
    print(f"live: {statistics.median(times):.1f} ms of server work per 0.3 s chunk with the "
          f"{LIVE_WINDOW_S:g} s window full (median of {len(times)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[2.5, 10.0, 40.0])
    ap.add_argument("--clips", type=int, default=20, help="synthetic clips in the batch")
    ap.add_argument("--folder", type=Path, help="also a batch of the recordings in this folder")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    bench_imitate(args.seconds)
    bench_batch(args.clips, None)
    if args.folder is not None:
        bench_batch(0, args.folder)
    bench_live()


if __name__ == "__main__":
    main()
