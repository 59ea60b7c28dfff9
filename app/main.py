"""The web app's entry point: `python app.py`, `python -m app` or `emotionthinker` (installed).

`python app.py --help` lists the flags; each has an environment variable (app/settings.py).
"""

from __future__ import annotations

import logging
import sys

from app.settings import parse


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)  # --help answers before the heavy imports
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    from app.ui import launch

    launch(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
