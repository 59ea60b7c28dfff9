"""Command line: prosody of audio files, the model's reasoning about them, what-if re-synthesis.
`python -m engine ...`, or `emotionthinker-engine ...` once the project is installed.

    python -m engine analyze FILE [FILE ...] [--json] [--voice auto|male|female|child] [--no-contours]
                              [--textgrid DIR]
    python -m engine analyze FILE --model SRC [--quant Q] [--device D] [--max-new-tokens N] [--json]
    python -m engine analyze FILE --backend URL [--backend-key KEY] ...    (a remote server reasons)
                                  [--temperature T] [--top-p P] [--seed S] [--no-compile]
    python -m engine manipulate IN OUT [--pitch-shift ST] [--pitch-range X] [--tilt ST] [--tempo X]
                                       [--gain-db DB]

`analyze` prints a plain-language summary per file; with `--json`, exactly one JSON object per
file per line (a public contract other tools parse):
  {"file", "duration_s", "sample_rate_hz", "analysis_sample_rate_hz", "audio": {...},
   "pitch": {...}, "energy": {...}, "rate": {...}, "intonation": {...}, "voice": {...},
   "levels": {...}, "speech_found", "voice_type": {"requested", "assumed", "reason"}, "summary": [...],
   "contours": {"time_s", "f0_hz", "f0_st", "intensity_db", "speech"}}
with null wherever a value cannot be measured. With `--model`, each object also has
  "reasoning": {"think", "answer", "label", "scores", "scored_label", "forced", "scores_note", "format_ok",
                "claims", "grounding_agreement", "timing"}
and text mode streams the reasoning as it is written. Without `--model` (or with `--no-model`)
only prosody is measured. A file that fails gives {"file", "error"} (in text mode the message
goes to stderr); the other files are still analysed and the exit status is 2. A model that
cannot be loaded is an error before any file is read (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from engine.audio import MAX_SECONDS
from engine.prosody.levels import VOICE_TYPES
from engine.reasoning.model import DEFAULT_SOURCE, QUANTS
from engine.reasoning.options import DEFAULT_MAX_NEW_TOKENS

logger = logging.getLogger("engine.cli")


def measure_file(path: str, *, max_seconds: float = MAX_SECONDS, voice: str = "auto",
                 contours: bool = True):
    """(the CLI's JSON object, Clip, ProsodyReport) for one file; AudioError for unusable audio."""
    from engine.audio import load_audio
    from engine.prosody import analyze
    from engine.prosody.describe import describe

    clip = load_audio(path, max_seconds=max_seconds)
    report = analyze(clip, voice=voice)
    body = report.to_dict(contours=contours)
    out = {"file": path, "duration_s": body.pop("duration_s"),
           "sample_rate_hz": clip.source_rate_hz,
           "analysis_sample_rate_hz": body.pop("sample_rate_hz"),
           "audio": clip.to_dict()}
    out.update(body)
    out["summary"] = describe(report)
    if contours:
        out["contours"] = out.pop("contours")  # keep the long arrays last on the line
    return out, clip, report


def reason(reasoner, clip, report, options, on_text=None) -> dict[str, Any]:
    """Stream the model's reasoning about a clip; returns the "reasoning" object of --json, with
    its claims checked against `report`. `on_text(kind, text)` gets the text as it is written."""
    from engine.grounding import agreement, check
    from engine.reasoning.reasoner import Answer, Done, TextDelta

    answer = done = None
    for event in reasoner.stream(clip, options):
        if isinstance(event, TextDelta) and on_text:
            on_text(event.kind, event.text)
        elif isinstance(event, Answer):
            answer = event
        elif isinstance(event, Done):
            done = event
    claims = check(answer.think, report)
    timing = {k: getattr(done, k) for k in ("ttft_s", "n_tokens", "tok_per_s", "stop_reason",
                                            "total_s", "prompt_tokens", "audio_tokens", "score_s")}
    return {"think": answer.think, "answer": answer.raw, "label": answer.label,
            "scores": {k: round(v, 5) for k, v in answer.scores.items()},
            "scored_label": answer.scored_label, "forced": answer.forced,
            "scores_note": answer.scores_note,
            "format_ok": answer.format_ok, "claims": [c.to_dict() for c in claims],
            "grounding_agreement": agreement(claims), "timing": timing}


def cmd_analyze(args: argparse.Namespace) -> int:
    reasoner = options = None
    if args.backend and not args.no_model:  # the reasoning from a server; prosody here
        from engine.reasoning.options import GenerationOptions
        from engine.remote import RemoteReasoner, RemoteUnavailable

        try:
            options = GenerationOptions(max_new_tokens=args.max_new_tokens,
                                        temperature=args.temperature, top_p=args.top_p,
                                        seed=args.seed)
            reasoner = RemoteReasoner(args.backend, args.backend_key)
            print(f"backend: {reasoner.check()} at {args.backend}", file=sys.stderr, flush=True)
        except (ValueError, RemoteUnavailable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.model and not args.no_model:
        from engine.reasoning.model import ModelUnavailable, load_model
        from engine.reasoning.options import GenerationOptions
        from engine.reasoning.reasoner import Reasoner

        try:
            options = GenerationOptions(max_new_tokens=args.max_new_tokens,
                                        temperature=args.temperature, top_p=args.top_p,
                                        seed=args.seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            loaded = load_model(args.model, quant=args.quant, device=args.device,
                                progress=lambda m: print(m, file=sys.stderr, flush=True))
        except Exception as exc:  # noqa: BLE001 - said in one line; a defect's traceback is logged
            if not isinstance(exc, (ModelUnavailable, ValueError)) or exc.__cause__ is not None:
                logger.error("loading %s failed", args.model, exc_info=exc)
            print(f"error: the model cannot be loaded: {exc}", file=sys.stderr)
            return 2
        print(f"model: {loaded.describe()}", file=sys.stderr, flush=True)
        reasoner = Reasoner(loaded, compile=False if args.no_compile else None)
    failed, written = 0, set()
    for path in args.files:
        try:
            result, clip, report = measure_file(path, max_seconds=args.max_seconds,
                                                voice=args.voice,
                                                contours=args.json and not args.no_contours)
            if args.textgrid:
                from pathlib import Path

                from engine.export import write_all

                stem = Path(path).stem
                while stem in written:  # two inputs with one name: keep both
                    stem += "_"
                written.add(stem)
                write_all(report, args.textgrid, stem, record=result)
            if reasoner is not None:
                if not args.json:
                    print(_text(result), "\n  Reasoning: ", end="", flush=True)
                result["reasoning"] = reason(reasoner, clip, report, options,
                                             on_text=None if args.json else _echo)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            failed += 1
            if isinstance(exc, ValueError):  # unusable audio: the message says it all
                message = str(exc)
            else:  # a defect: the traceback goes to the log, the short message to the user
                logger.exception("analysing %s failed", path)
                message = f"{type(exc).__name__}: {exc}"
            if args.json:
                print(json.dumps({"file": path, "error": message}), flush=True)
            else:
                print(f"{path}: error: {message}", file=sys.stderr, flush=True)
            continue
        if args.json:
            print(json.dumps(result, separators=(",", ":")), flush=True)
        elif reasoner is not None:
            print(_reasoning_text(result["reasoning"]), flush=True)
        else:
            print(_text(result), flush=True)
    return 2 if failed else 0


def _echo(kind: str, text: str) -> None:
    print(text if kind == "think" else "", end="", flush=True)


def _reasoning_text(r: dict[str, Any]) -> str:
    top = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:3]
    scores = ", ".join(f"{label} {100 * p:.0f} %" for label, p in top)
    lines = ["", f"  Answer: {r['label'] or 'none given'}"
             + (f" (raw: {r['answer']!r})" if r["label"] == "unknown" else ""),
             f"  Confidence: {scores or 'none'}" + (" (answer forced after the reasoning)" if r["forced"] else "")
             + (f" ({r['scores_note']})" if r.get("scores_note") else "")]
    for c in r["claims"]:
        neg = "not " if c["negated"] else ""
        lines.append(f"  Claim '{c['text']}' ({neg}{c['value']}): {c['verdict']}, {c['measured']}")
    t = r["timing"]
    lines.append(f"  Timing: first token {t['ttft_s']:.2f} s, {t['n_tokens']} tokens at "
                 f"{t['tok_per_s']:.1f} tok/s, stopped by {t['stop_reason']}")
    return "\n".join(lines)


def cmd_manipulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.audio import load_audio, write_wav
    from engine.prosody.manipulate import manipulate

    target = Path(args.output)
    if target.suffix.lower() not in (".wav", ".wave"):
        print(f"error: {target.name}: the output is written as WAV; give it a .wav name", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"error: {target.name}: its folder does not exist; create it first", file=sys.stderr)
        return 2
    try:
        clip = load_audio(args.input, max_seconds=args.max_seconds)
        out = manipulate(clip, pitch_shift_st=args.pitch_shift, pitch_range=args.pitch_range,
                         tempo=args.tempo, gain_db=args.gain_db, tilt_st=args.tilt)
    except ValueError as exc:
        print(f"{args.input}: error: {exc}", file=sys.stderr)
        return 2
    try:
        lowered_db = write_wav(target, out)
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors: no space, no rights
        print(f"error: {target.name} could not be written: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({out.duration_s:.2f} s, {out.sample_rate_hz} Hz)")
    if lowered_db > 0:
        print(f"note: at {args.gain_db:+g} dB it would clip; it was lowered by {lowered_db:.1f} dB",
              file=sys.stderr)
    return 0


def _text(r: dict[str, Any]) -> str:
    audio = r["audio"]
    channels = "mono" if audio["source_channels"] == 1 else f"{audio['source_channels']} channels"
    head = f"== {r['file']} ({r['duration_s']:.2f} s, {r['sample_rate_hz']} Hz, {channels}) =="
    notes = [n for n, on in (("clipped", audio["clipped"]), ("silent", audio["silent"])) if on]
    lines = [head] + [f"  {s}" for s in r["summary"]]
    if notes:
        lines.append(f"  Note: the recording is {' and '.join(notes)}.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m engine", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="measure the prosody of audio files")
    a.add_argument("files", nargs="+", metavar="FILE")
    a.add_argument("--json", action="store_true", help="one JSON object per file per line")
    a.add_argument("--voice", "--gender", default="auto", choices=VOICE_TYPES,
                   help="whose norms make a pitch low or high (default auto: assumed from each clip "
                        "where its pitch is typical of one voice type, else no pitch level)")
    a.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                   help=f"longest clip accepted (default {MAX_SECONDS:g})")
    a.add_argument("--no-contours", action="store_true", help="leave the contours out of --json")
    a.add_argument("--textgrid", metavar="DIR",
                   help="also write each file's Praat TextGrid and PitchTier, a per-frame CSV and "
                        "the JSON into DIR (engine/export.py)")
    a.add_argument("--model", default=os.environ.get("ET_MODEL"), metavar="SRC",
                   help=f"hub id (the released model: {DEFAULT_SOURCE}) or checkpoint directory "
                        "of EmotionThinker: adds its reasoning")
    a.add_argument("--backend", default=os.environ.get("ET_BACKEND"), metavar="URL",
                   help="reason through an OpenAI-compatible server (engine.serve, vLLM) instead "
                        "of loading a model here, e.g. http://gpu-box:8000/v1")
    a.add_argument("--backend-key", default=os.environ.get("ET_BACKEND_KEY"), metavar="KEY")
    a.add_argument("--quant", default="auto", choices=QUANTS)
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    a.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    a.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    a.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    a.add_argument("--seed", type=int, default=None)
    a.add_argument("--no-compile", action="store_true",
                   help="decode eagerly on a GPU too (the compile costs ~1 min, once per run)")
    a.add_argument("--no-model", action="store_true",
                   help="prosody only, no emotion reasoning (the default without --model)")
    a.set_defaults(run=cmd_analyze)

    m = sub.add_parser("manipulate", help="re-synthesise a clip with changed prosody (Praat PSOLA)")
    m.add_argument("input", metavar="IN")
    m.add_argument("output", metavar="OUT", help="WAV file to write (16 kHz, 16-bit)")
    m.add_argument("--pitch-shift", type=float, default=0.0, metavar="ST", help="semitones")
    m.add_argument("--pitch-range", type=float, default=1.0, metavar="X",
                   help="scale the pitch range about the median: 0 flat, 1 unchanged")
    m.add_argument("--tilt", type=float, default=0.0, metavar="ST",
                   help="add a rise (positive) or fall (negative) of ST semitones, start to end")
    m.add_argument("--tempo", type=float, default=1.0, metavar="X", help="speed factor, 2 = twice as fast")
    m.add_argument("--gain-db", type=float, default=0.0, metavar="DB")
    m.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    m.set_defaults(run=cmd_manipulate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except BrokenPipeError:  # `... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
