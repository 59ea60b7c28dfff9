"""The app's settings: command-line flags, each with an environment variable as its default.

    python app.py [--model SRC] [--quant Q] [--device D] [--host H] [--port P] [--share]
                  [--max-seconds N] [--no-model] [--no-compile]

| flag | environment | default |
| --- | --- | --- |
| --model | ET_MODEL | ddwang2000/EmotionThinker |
| --quant | ET_QUANT | auto (nf4; on a CPU without bitsandbytes bf16 or fp32) |
| --device | ET_DEVICE | auto (a CUDA GPU if there is one) |
| --host | ET_HOST (or GRADIO_SERVER_NAME) | 127.0.0.1 |
| --port | ET_PORT (or GRADIO_SERVER_PORT) | 7860 |
| --share | ET_SHARE=1 | off |
| --max-seconds | ET_MAX_SECONDS | 120 |
| --max-file-mb | ET_MAX_FILE_MB | 50 |
| --queue-size | ET_QUEUE_SIZE | 8 reasoning requests waiting at most |
| --no-model | ET_NO_MODEL=1 | off: prosody only, no model is loaded |
| --no-compile | ET_NO_COMPILE=1 | off: on CUDA the decode step is compiled during warm-up |
| --max-batch | ET_MAX_BATCH | 8 requests decode together (on CUDA; elsewhere one at a time) |
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from engine.audio import MAX_SECONDS
from engine.reasoning.decoder import BATCH_SIZES
from engine.reasoning.model import DEFAULT_SOURCE, QUANTS


@dataclass(frozen=True)
class Settings:
    model: str  # hub id or checkpoint directory
    quant: str  # auto, nf4, int8, bf16, fp32
    device: str  # auto, cpu, cuda, cuda:1 ...
    host: str  # interface to bind; 127.0.0.1 keeps the app on this machine
    port: int
    share: bool  # a public gradio.live link (opt-in)
    max_seconds: float  # longer clips are refused with a message naming the limit
    max_file_mb: int  # largest upload accepted
    queue_size: int  # reasoning requests allowed to wait for the model
    no_model: bool  # prosody only
    compile: bool  # compile the decode step on CUDA (warm-up takes longer, decoding is faster)
    max_batch: int  # reasoning requests that decode together (the compiled / static decoder)


def parse(argv: list[str] | None = None) -> Settings:
    """Settings from `argv` (or sys.argv), environment variables supplying the defaults."""
    env = os.environ.get
    on = lambda name: env(name, "").lower() in ("1", "true", "yes", "on")  # noqa: E731
    ap = argparse.ArgumentParser(prog="app.py", description="EmotionThinker, explained: a web app")
    ap.add_argument("--model", default=env("ET_MODEL", DEFAULT_SOURCE))
    ap.add_argument("--quant", default=env("ET_QUANT", "auto"), choices=QUANTS)
    ap.add_argument("--device", default=env("ET_DEVICE", "auto"))
    ap.add_argument("--host", default=env("ET_HOST", env("GRADIO_SERVER_NAME", "127.0.0.1")))
    ap.add_argument("--port", type=int, default=int(env("ET_PORT", env("GRADIO_SERVER_PORT", "7860"))))
    ap.add_argument("--share", action="store_true", default=on("ET_SHARE"))
    ap.add_argument("--max-seconds", type=float, default=float(env("ET_MAX_SECONDS", MAX_SECONDS)))
    ap.add_argument("--max-file-mb", type=int, default=int(env("ET_MAX_FILE_MB", "50")))
    ap.add_argument("--queue-size", type=int, default=int(env("ET_QUEUE_SIZE", "8")))
    ap.add_argument("--no-model", action="store_true", default=on("ET_NO_MODEL"))
    ap.add_argument("--max-batch", type=int, default=int(env("ET_MAX_BATCH", "8")),
                    help="reasoning requests that decode together on a GPU (1-8)")
    ap.add_argument("--no-compile", action="store_true", default=on("ET_NO_COMPILE"),
                    help="decode eagerly even on a GPU (quicker start, slower reasoning)")
    a = ap.parse_args(argv)
    if not 1 <= a.max_batch <= BATCH_SIZES[-1]:
        ap.error(f"--max-batch must be between 1 and {BATCH_SIZES[-1]}")
    return Settings(model=a.model, quant=a.quant, device=a.device, host=a.host, port=a.port,
                    share=a.share, max_seconds=a.max_seconds, max_file_mb=a.max_file_mb,
                    queue_size=a.queue_size, no_model=a.no_model, compile=not a.no_compile,
                    max_batch=a.max_batch)
