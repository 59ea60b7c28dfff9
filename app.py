"""EmotionThinker app entry point: `python app.py [--model SRC] [--quant Q] [--host H] [--port P]
[--share] [--max-seconds N]`.

The Gradio interface lands with issue 4. Until then this entry point takes the final flags,
says what exists today, and exits; `python -m engine analyze FILE` is the working tool.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(description="EmotionThinker: explainable speech emotion reasoning")
    ap.add_argument("--model", default=env("ET_MODEL", "ddwang2000/EmotionThinker"))
    ap.add_argument("--quant", default=env("ET_QUANT", "auto"))
    ap.add_argument("--host", default=env("ET_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(env("ET_PORT", "7860")))
    ap.add_argument("--share", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=float(env("ET_MAX_SECONDS", "120")))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    print("The EmotionThinker web app is not built yet (issue 4).\n"
          "What works today, from the command line:\n"
          "  .venv/bin/python -m engine analyze CLIP.wav [--json]\n"
          "  .venv/bin/python -m engine manipulate IN.wav OUT.wav --pitch-shift 4 --tempo 1.2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
