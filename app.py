"""EmotionThinker, explained: `python app.py` starts the web app; also a Hugging Face Space's
app_file. `python app.py --help` lists the flags (app/settings.py).

This file and the `app/` package share a name on purpose (Spaces run `app.py`). No code imports
this file: `import app` and `from app.x import y` always mean the package, because for one folder
on sys.path Python's finder prefers the package directory `app/` to the module `app.py`; and
`pip install .` installs only the packages, never this file. So the whole entry point is below.
"""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
