"""The bad-input harness: every kind of broken, odd or hostile audio through the CLI and the app.

    python bench/robustness.py            # builds the matrix, starts a prosody-only app, prints
    python bench/robustness.py --no-http  # the CLI only

For each input it runs `python -m engine analyze FILE --json` (its own process) and the app's
`/prosody` endpoint over HTTP (a prosody-only app on a free local port), and then, over HTTP, a
good clip, whose answer must still be right. Each outcome is one of:
- correct: the clip was measured (an odd but valid input: 8-bit, 384 kHz, 64 channels ...);
- clear error: refused with a message in words, the file named, no server path;
- defect: a traceback, an internal message, a hang (over 60 s), a crash, a wrong next answer,
  or a refusal of a valid input / an acceptance of an invalid one.
Prints one row per input and `N inputs, N clear errors, N correct, N defects`; exits 1 on any
defect. Runs in CI (tests/test_repo.py).
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
TIMEOUT_S = 60.0
MAX_SECONDS = 5.0  # the limit both the CLI and the app run with here
# Words that never belong in a message to a user
INTERNAL = re.compile(r"Traceback|object has no attribute|NoneType|Errno|unpack|invalid literal|"
                      r"cannot convert|Exception|\bint\(\)|\bfloat\(\)|site-packages")


def voice(seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    from engine.prosody import synth

    x = synth.harmonic(150.0, seconds, syllable_hz=4.0)
    if sr != SR:
        from engine.audio import resample

        x = resample(x, SR, sr)
    return x.astype(np.float32)


def wav_header(path: Path, channels: int, tag: int, bits: int, data: bytes, rate: int = SR,
               data_size: int | None = None) -> None:
    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", min(len(body), 2**32 - 1)) + body)


def matrix(folder: Path) -> list[tuple[str, Path, bool]]:
    """(what, file, valid?) for every kind of input."""
    v = voice()
    rng = np.random.default_rng(0)
    cases: list[tuple[str, Path, bool]] = []

    def add(name: str, filename: str, valid: bool, make: Callable[[Path], None]) -> None:
        path = folder / filename
        make(path)
        cases.append((name, path, valid))

    def write(subtype=None, sr=SR, x=None, fmt=None):
        return lambda p: sf.write(p, v if x is None else x, sr, subtype=subtype, format=fmt)

    pcm16 = (v * 32767).astype("<i2").tobytes()
    add("empty file", "empty.wav", False, lambda p: p.write_bytes(b""))
    add("header only", "header_only.wav", False, lambda p: wav_header(p, 1, 1, 16, b""))
    add("truncated data", "truncated.wav", True, lambda p: wav_header(p, 1, 1, 16, pcm16[:16000],
                                                                     data_size=len(pcm16)))
    add("random bytes as WAV", "random.wav", False, lambda p: p.write_bytes(rng.bytes(5000)))
    add("random bytes as MP3", "random.mp3", False, lambda p: p.write_bytes(rng.bytes(5000)))
    add("text as WAV", "notes.wav", False, lambda p: p.write_text("this is not audio\n" * 50))
    add("WAV named .mp3", "wav_inside.mp3", True, write("PCM_16", fmt="WAV"))
    add("WAV without extension", "noext", True, write("PCM_16", fmt="WAV"))
    for subtype in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM",
                    "MS_ADPCM"):
        add(f"WAV {subtype}", f"sub_{subtype.lower()}.wav", True, write(subtype))
    add("FLAC", "clip.flac", True, write())
    add("OGG Vorbis", "clip.ogg", True, write("VORBIS", fmt="OGG"))
    add("MP3", "clip.mp3", True, write(fmt="MP3"))
    for sr in (8000, 11025, 44100, 96000, 384000):
        add(f"{sr} Hz", f"rate_{sr}.wav", True, write("PCM_16", sr=sr, x=voice(2.0, sr)))
    add("0 channels", "zero_channels.wav", False, lambda p: wav_header(p, 0, 1, 16, pcm16))
    add("7-bit samples", "bits7.wav", False, lambda p: wav_header(p, 1, 1, 7, pcm16))
    add("unknown codec", "codec.wav", False, lambda p: wav_header(p, 1, 0x1234, 16, pcm16))
    add("sample rate 0", "rate0.wav", False, lambda p: wav_header(p, 1, 1, 16, pcm16, rate=0))
    for ch in (2, 6, 64):
        add(f"{ch} channels", f"ch_{ch}.wav", True,
            write("PCM_16", x=np.tile(v[:SR * 2][:, None], (1, ch)) * 0.5))
    add("dead channel", "dead.wav", True, write("PCM_16", x=np.stack([v, 0 * v], 1)))
    add("inverted channel", "inverted.wav", True, write("PCM_16", x=np.stack([v, -v], 1)))
    bad = v.copy()
    bad[1000:1100] = np.nan
    add("NaN samples", "nan.wav", False, write("FLOAT", x=bad))
    bad = v.copy()
    bad[2000] = np.inf
    add("Inf samples", "inf.wav", False, write("FLOAT", x=bad))
    add("DC offset", "dc.wav", True, write("FLOAT", x=(0.5 * v + 0.3).astype(np.float32)))
    add("silence", "silence.wav", True, write("PCM_16", x=np.zeros(SR * 2, np.float32)))
    t = np.arange(SR * 2) / SR
    add("pure tone", "tone.wav", True, write("PCM_16", x=(0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)))
    add("square wave", "square.wav", True,
        write("PCM_16", x=(0.99 * np.sign(np.sin(2 * np.pi * 200 * t))).astype(np.float32)))
    add("white noise", "noise.wav", True, write("FLOAT", x=(0.3 * rng.standard_normal(SR * 2)).astype(np.float32)))
    add("0.1 s (too short)", "short.wav", False, write("PCM_16", x=v[: SR // 10]))
    add("exactly 0.25 s", "quarter.wav", True, write("PCM_16", x=v[: SR // 4]))
    add(f"exactly {MAX_SECONDS:g} s", "at_limit.wav", True, write("PCM_16", x=voice(MAX_SECONDS)))
    add(f"just over {MAX_SECONDS:g} s", "over_limit.wav", False, write("PCM_16", x=voice(MAX_SECONDS + 0.2)))
    add("header claims hours", "huge_claim.wav", True,
        lambda p: wav_header(p, 1, 1, 16, pcm16, data_size=2**31))
    add("long unicode name", ("ünïcödé-ßpeech-😀-" * 6) + ".wav", True, write("PCM_16"))
    return cases


def classify_cli(path: Path, valid: bool) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "engine", "analyze", str(path), "--json", "--no-contours",
                               "--max-seconds", str(MAX_SECONDS)], capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "defect", f"no answer in {TIMEOUT_S:g} s", TIMEOUT_S
    took = time.perf_counter() - t0
    if INTERNAL.search(done.stderr) or done.returncode not in (0, 2):
        return "defect", (done.stderr.strip().splitlines() or ["crash"])[-1][:120], took
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return "defect", "no JSON line", took
    return judge(result.get("error"), valid, path, took)


def judge(error: str | None, valid: bool, path: Path, took: float) -> tuple[str, str, float]:
    if error is None:
        return ("correct", "measured", took) if valid else ("defect", "accepted an invalid input", took)
    if INTERNAL.search(error) or str(path.parent) in error:
        return "defect", error[:120], took
    return ("clear error", error[:120], took) if not valid else ("defect", f"refused: {error[:100]}", took)


def classify_http(client, path: Path, valid: bool, good: Path) -> tuple[str, str, float]:
    from gradio_client import handle_file

    t0 = time.perf_counter()
    try:
        _, _, measurements = client.predict(handle_file(str(path)), "Hz", api_name="/prosody")
        error = None if measurements else "no measurements"
    except Exception as exc:  # noqa: BLE001 - what the user would see
        error = str(exc)
    took = time.perf_counter() - t0
    outcome = judge(error, valid, path, took)
    _, _, after = client.predict(handle_file(str(good)), "Hz", api_name="/prosody")
    if not after or not 140 < (after["pitch"]["median_hz"] or 0) < 160:
        return "defect", "the next answer was wrong", took
    return outcome


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-http", action="store_true", help="the CLI only")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="robustness-"))
    cases = matrix(folder)
    good = folder / "good.wav"
    sf.write(good, voice(), SR)
    with ThreadPoolExecutor(2) as pool:
        cli = list(pool.map(lambda c: classify_cli(c[1], c[2]), cases))
    http: list = [None] * len(cases)
    if not args.no_http:
        import socket

        from gradio_client import Client

        from app.settings import parse
        from app.ui import launch

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo, _ = launch(parse(["--no-model", "--port", str(port), "--max-seconds", str(MAX_SECONDS)]),
                         block=False)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        http = [classify_http(client, path, valid, good) for _, path, valid in cases]
        demo.close()
    counts = {"correct": 0, "clear error": 0, "defect": 0}
    print(f"{'input':<24} | {'CLI':<12} | {'HTTP':<12} | message")
    for (name, _, _), c, h in zip(cases, cli, http):
        for outcome in (c, h):
            if outcome is not None:
                counts[outcome[0]] += 1
        worst = next((o for o in (c, h) if o is not None and o[0] == "defect"), c)
        print(f"{name[:24]:<24} | {c[0]:<12} | {(h[0] if h else '-'):<12} | {worst[1][:90]}")
    total = sum(counts.values())
    print(f"{total} inputs, {counts['clear error']} clear errors, {counts['correct']} correct, "
          f"{counts['defect']} defects")
    return 1 if counts["defect"] else 0


if __name__ == "__main__":
    sys.exit(main())
