"""Desktop: record from this computer's microphone, then print the same analysis as the CLI.

    python -m app.mic                       # speak, press Enter to stop; prosody summary
    python -m app.mic --json --model DIR    # any `python -m engine analyze` flag works

Needs PortAudio (Debian: apt-get install libportaudio2) and an input device; without either it
says so and exits with status 2. A level meter shows that the microphone hears you.
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from engine.audio import MAX_SECONDS, SAMPLE_RATE_HZ

METER_WIDTH = 40


def open_microphone():
    """The sounddevice module with a usable input device, or a SystemExit(2) saying what is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # raised at import when the PortAudio library is missing
        print(f"error: no PortAudio library ({exc}); install it, e.g. apt-get install libportaudio2",
              file=sys.stderr)
        raise SystemExit(2) from None
    try:
        sd.query_devices(kind="input")
    except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError: no default input
        print(f"error: no microphone found ({exc}); plug one in or choose a default input device",
              file=sys.stderr)
        raise SystemExit(2) from None
    return sd


def record(sd, max_seconds: float) -> np.ndarray:
    """Record until Enter (or max_seconds), drawing a level meter; float32 mono at 16 kHz."""
    chunks: queue.Queue = queue.Queue()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
    print("recording: speak, then press Enter", file=sys.stderr)
    got, limit = [], int(max_seconds * SAMPLE_RATE_HZ)
    with sd.InputStream(samplerate=SAMPLE_RATE_HZ, channels=1, dtype="float32",
                        callback=lambda data, *_: chunks.put(data[:, 0].copy())):
        while not done.is_set() and sum(map(len, got)) < limit:
            try:
                block = chunks.get(timeout=0.1)
            except queue.Empty:
                continue
            got.append(block)
            level = 20 * np.log10(max(float(np.sqrt(np.mean(block ** 2))), 1e-6))
            bars = int(np.clip((level + 60) / 60, 0, 1) * METER_WIDTH)
            print(f"\r{'#' * bars:<{METER_WIDTH}} {level:6.1f} dBFS", end="", file=sys.stderr)
    print(file=sys.stderr)
    return np.concatenate(got) if got else np.zeros(0, np.float32)


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    from engine.cli import main as engine_main

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    args, rest = ap.parse_known_args(argv)
    sd = open_microphone()
    samples = record(sd, args.max_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "microphone.wav"
        sf.write(path, samples, SAMPLE_RATE_HZ)
        return engine_main(["analyze", str(path), "--max-seconds", str(args.max_seconds), *rest])


if __name__ == "__main__":
    sys.exit(main())
