"""`python -m engine ...`: the command line lives in engine/cli.py."""

import sys

from engine.cli import main

sys.exit(main())
