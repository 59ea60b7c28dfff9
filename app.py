"""EmotionThinker, explained: the web app. `python app.py --help` lists the flags; each has an
environment variable (app/settings.py). Also the entry point of a Hugging Face Space."""

from __future__ import annotations

import sys

from app.settings import parse


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)  # --help answers before the heavy imports
    from app.ui import launch

    launch(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
