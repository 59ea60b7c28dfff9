"""`python -m engine.tiny DIR [--full-size]`, the name the developers' guide uses: the builder
itself is engine/reasoning/tiny.py (also `emotionthinker-tiny`)."""

import sys

from engine.reasoning.tiny import main

if __name__ == "__main__":
    sys.exit(main())
