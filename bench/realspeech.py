"""Benchmark: the prosody analysis on real recordings with a truth (syllables, Praat, gender).

    python bench/realspeech.py ../shared/realspeech-dev        # a table per clip, then the means
    python bench/realspeech.py DIR --json out.json              # also write every number

DIR holds MANIFEST.tsv (tab-separated with a header: `path`, `corpus`, `text`, `syllables`, and
optionally `gender`) and the audio files it names, relative to DIR. The recordings are read, not
copied: keep licensed corpora out of the repository. Per clip it prints:
- syllables: the nuclei `analyze` counts against the truth, the syllables of the text in the CMU
  Pronouncing Dictionary (train.phonemes; the manifest's `syllables` column when a word is not in
  the dictionary). The manifest's own count is printed beside it and a disagreement is flagged
  ("!"): the development set's RAVDESS rows say 6 for "Kids are talking by the door.", which has
  7 (kids-are-talk-ing-by-the-door). The error is |counted - truth| / truth; the means are over
  all clips and per corpus, against both truths.
- HNR: `analyze`'s against Praat's own Harmonicity (cc) with its standard arguments (10 ms, 75 Hz,
  0.1, 1 period) on the recording at its own sample rate, "Get mean" (the reference path).
- voice type: what "auto" assumed against the manifest's `gender` (right / none assumed / wrong).
Nothing is tuned to these clips: the methods are documented in engine/prosody/analysis.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np


def read_manifest(folder: Path) -> list[dict]:
    with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = {"path", "text", "syllables"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{folder / 'MANIFEST.tsv'} lacks the column(s) {', '.join(sorted(missing))}")
    return rows


def praat_hnr_db(path: Path) -> float | None:
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(str(path)).convert_to_mono()
    value = call(sound.to_harmonicity_cc(0.01, 75.0, 0.1, 1.0), "Get mean", 0, 0)
    return float(value) if np.isfinite(value) else None


def measure(folder: Path, row: dict) -> dict:
    from engine.audio import load_audio
    from engine.prosody import analyze
    from train.phonemes import count_syllables

    path = folder / row["path"]
    report = analyze(load_audio(path))
    manifest_truth = int(row["syllables"])
    text_truth = count_syllables(row.get("text"))
    truth = text_truth or manifest_truth
    counted = report.rate.syllable_count
    return {"path": row["path"], "corpus": row.get("corpus") or "-", "gender": row.get("gender"),
            "truth": truth, "manifest_syllables": manifest_truth, "text_syllables": text_truth,
            "counted": counted, "error": abs(counted - truth) / truth,
            "error_vs_manifest": abs(counted - manifest_truth) / manifest_truth,
            "hnr_db": report.voice.hnr_db, "praat_hnr_db": praat_hnr_db(path),
            "median_f0_hz": report.pitch.median_hz, "voice_assumed": report.voice_type.assumed}


def voice_verdict(r: dict) -> str:
    if not r["gender"] or r["gender"].lower() not in ("male", "female", "child"):
        return "-"
    if r["voice_assumed"] is None:
        return "none"
    return "right" if r["voice_assumed"] == r["gender"].lower() else "WRONG"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a folder with MANIFEST.tsv and the clips it names")
    ap.add_argument("--json", type=Path, metavar="OUT", help="write every number here")
    args = ap.parse_args()
    results = [measure(args.folder, row) for row in read_manifest(args.folder)]

    print(f"{'clip':44} {'corpus':11} {'truth':>5} {'manif':>5} {'count':>5} {'error':>6} | "
          f"{'HNR':>5} {'Praat':>5} | {'F0 Hz':>6} voice")
    for r in results:
        flag = "!" if r["text_syllables"] and r["text_syllables"] != r["manifest_syllables"] else " "
        hnr = "  -  " if r["hnr_db"] is None else f"{r['hnr_db']:5.1f}"
        praat = "  -  " if r["praat_hnr_db"] is None else f"{r['praat_hnr_db']:5.1f}"
        f0 = "  -   " if r["median_f0_hz"] is None else f"{r['median_f0_hz']:6.1f}"
        print(f"{r['path'][-44:]:44} {r['corpus'][:11]:11} {r['truth']:5d} {r['manifest_syllables']:4d}{flag}"
              f" {r['counted']:5d} {100 * r['error']:5.1f}% | {hnr} {praat} | {f0} "
              f"{r['voice_assumed'] or '-'} ({voice_verdict(r)})")

    print("\nsyllable count, mean absolute error (truth: the text's CMU dictionary syllables; "
          "in brackets: against the manifest's column)")
    groups = {"all": results} | {c: [r for r in results if r["corpus"] == c]
                                 for c in sorted({r["corpus"] for r in results})}
    summary = {}
    for name, rs in groups.items():
        mae = statistics.mean(r["error"] for r in rs)
        mae_manifest = statistics.mean(r["error_vs_manifest"] for r in rs)
        bias = statistics.mean((r["counted"] - r["truth"]) / r["truth"] for r in rs)
        summary[name] = {"clips": len(rs), "mae": mae, "mae_vs_manifest": mae_manifest, "bias": bias}
        print(f"  {name:14} {len(rs):3d} clips  {100 * mae:5.1f} %  ({100 * mae_manifest:5.1f} %)  "
              f"bias {100 * bias:+5.1f} %")
    pairs = [(r["hnr_db"], r["praat_hnr_db"]) for r in results
             if r["hnr_db"] is not None and r["praat_hnr_db"] is not None]
    if pairs:
        diffs = [a - b for a, b in pairs]
        summary["hnr"] = {"clips": len(pairs), "mean_abs_diff_db": statistics.mean(map(abs, diffs)),
                          "mean_diff_db": statistics.mean(diffs)}
        print(f"HNR vs Praat's Harmonicity (cc): mean |difference| "
              f"{summary['hnr']['mean_abs_diff_db']:.2f} dB (mean {summary['hnr']['mean_diff_db']:+.2f} dB)"
              f" over {len(pairs)} clips")
    verdicts = [voice_verdict(r) for r in results if voice_verdict(r) != "-"]
    if verdicts:
        summary["voice_type"] = {v: verdicts.count(v) for v in ("right", "none", "WRONG")}
        print("voice type 'auto' vs the manifest's gender: "
              + ", ".join(f"{n} {v.lower()}" for v, n in summary["voice_type"].items()))
    if args.json:
        args.json.write_text(json.dumps({"clips": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
