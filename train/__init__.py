"""train/: see README.md (arrives with a later issue)."""
