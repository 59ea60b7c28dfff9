"""Benchmark: prosody labelling throughput, clips per second per core.

    python bench/label.py [--n 96] [--workers 1 2]

Builds a synthetic corpus (train.corpus: espeak-ng sentences of 2-4 s and PSOLA variants) and
times `train.label extract` on it with each worker count, then `calibrate`. Prints clips/s and
clips/s per worker. Audio decoding, Praat analysis, CMUdict syllables and JSON writing are all
inside the timing; the corpus build is not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from train.corpus import build
from train.label import calibrate, extract, measure
from train.records import read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build(Path(tmp) / "corpus", n=args.n)
        first = next(read_jsonl(manifest))
        measure(first, str(manifest.parent))  # imports and the pronouncing dictionary, untimed
        print(f"labelling {args.n} synthetic clips (2-4 s each)")
        for w in args.workers:
            out = Path(tmp) / f"measured_{w}.jsonl"
            stats = extract(manifest, out, workers=w)
            rate = stats["clips_per_s"]
            print(f"extract, {w} worker(s): {rate:6.1f} clips/s, {rate / w:6.1f} clips/s per worker")
        start = time.perf_counter()
        calibrate(out, Path(tmp) / "labelled.jsonl", min_group=10)
        print(f"calibrate: {(time.perf_counter() - start) * 1000:.0f} ms for {args.n} clips")


if __name__ == "__main__":
    main()
