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
| --keep-files-s | ET_KEEP_FILES_S | 3600: uploads and outputs are deleted after an hour |
| --backend | ET_BACKEND | none: the model runs here; a URL: an OpenAI-compatible server does |
| --backend-key | ET_BACKEND_KEY | none: the API key that server wants |
| --batch-max-clips | ET_BATCH_MAX_CLIPS | 200 clips per batch on the Class tab |
| --batch-max-mb | ET_BATCH_MAX_MB | 50 MiB uploaded per batch (a zip unpacks to at most 8x) |
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from engine.audio import MAX_FILE_BYTES, MAX_SECONDS
from engine.batch import MAX_BATCH_BYTES, MAX_CLIPS
from engine.reasoning.decoder import BATCH_SIZES
from engine.reasoning.model import DEFAULT_SOURCE, QUANTS


@dataclass(frozen=True)
class Settings:
    model: str  # hub id or checkpoint directory
    quant: str  # auto, nf4, int8, int4, bf16, fp32
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
    keep_files_s: int  # uploads and outputs are deleted this many seconds after they were made
    backend: str | None = None  # an OpenAI-compatible server's URL: the reasoning comes from it
    backend_key: str | None = None  # its API key
    batch_max_clips: int = MAX_CLIPS  # the Class tab: clips per batch (more are listed, not analysed)
    batch_max_mb: int = MAX_BATCH_BYTES // 2**20  # the Class tab: MiB uploaded per batch


def parse(argv: list[str] | None = None) -> Settings:
    """Settings from `argv` (or sys.argv), environment variables supplying the defaults. A bad
    value, from a flag or a variable, stops the start with a message naming both; `--help`
    answers whatever the environment holds."""
    env = os.environ.get
    on = lambda name: env(name, "").lower() in ("1", "true", "yes", "on")  # noqa: E731
    ap = argparse.ArgumentParser(prog="app.py", description="EmotionThinker, explained: a web app")

    def number(flag: str, variable: str, default, kind, low, high, what: str, **kw) -> None:
        """A numeric flag whose default comes from `variable`, checked at start-up."""
        def check(text: str):
            try:
                value = kind(text)
            except ValueError:
                value = None
            if value is None or value != value or not low <= value <= high:
                raise argparse.ArgumentTypeError(
                    f"must be {what} from {low:g} to {high:g}; got {text!r} (the flag, or {variable})")
            return value
        ap.add_argument(flag, type=check, default=env(variable, str(default)), **kw)

    ap.add_argument("--model", default=env("ET_MODEL", DEFAULT_SOURCE))
    ap.add_argument("--quant", default=env("ET_QUANT", "auto"), choices=QUANTS)
    ap.add_argument("--device", default=env("ET_DEVICE", "auto"))
    ap.add_argument("--host", default=env("ET_HOST", env("GRADIO_SERVER_NAME", "127.0.0.1")))
    number("--port", "ET_PORT", env("GRADIO_SERVER_PORT", "7860"), int, 1, 65535, "a port number")
    ap.add_argument("--share", action="store_true", default=on("ET_SHARE"))
    number("--max-seconds", "ET_MAX_SECONDS", MAX_SECONDS, float, 1.0, 3600.0, "a number of seconds")
    number("--max-file-mb", "ET_MAX_FILE_MB", 50, int, 1, MAX_FILE_BYTES // 2**20, "a whole number of MiB")
    number("--queue-size", "ET_QUEUE_SIZE", 8, int, 0, 1000, "a whole number")
    ap.add_argument("--no-model", action="store_true", default=on("ET_NO_MODEL"))
    number("--max-batch", "ET_MAX_BATCH", BATCH_SIZES[-1], int, 1, BATCH_SIZES[-1], "a whole number",
           help="reasoning requests that decode together on a GPU (1-8)")
    number("--keep-files-s", "ET_KEEP_FILES_S", 3600, int, 60, 7 * 86400, "a whole number of seconds",
           help="uploads and outputs are deleted after this long (default: an hour)")
    ap.add_argument("--no-compile", action="store_true", default=on("ET_NO_COMPILE"),
                    help="decode eagerly even on a GPU (quicker start, slower reasoning)")
    ap.add_argument("--backend", default=env("ET_BACKEND") or None, metavar="URL",
                    help="reason through an OpenAI-compatible server (engine.serve, vLLM), e.g. "
                         "http://gpu-box:8000/v1; prosody stays here")
    ap.add_argument("--backend-key", default=env("ET_BACKEND_KEY") or None, metavar="KEY")
    number("--batch-max-clips", "ET_BATCH_MAX_CLIPS", MAX_CLIPS, int, 1, 2000, "a whole number",
           help="clips per batch on the Class tab")
    number("--batch-max-mb", "ET_BATCH_MAX_MB", MAX_BATCH_BYTES // 2**20, int, 1, 500,
           "a whole number of MiB", help="MiB uploaded per batch on the Class tab")
    a = ap.parse_args(argv)
    return Settings(model=a.model, quant=a.quant, device=a.device, host=a.host, port=a.port,
                    share=a.share, max_seconds=a.max_seconds, max_file_mb=a.max_file_mb,
                    queue_size=a.queue_size, no_model=a.no_model, compile=not a.no_compile,
                    max_batch=a.max_batch, keep_files_s=a.keep_files_s, backend=a.backend,
                    backend_key=a.backend_key, batch_max_clips=a.batch_max_clips,
                    batch_max_mb=a.batch_max_mb)
