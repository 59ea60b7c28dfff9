"""`python -m app`: the web app (app/main.py)."""

import sys

from app.main import main

sys.exit(main())
