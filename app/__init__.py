"""app/: see README.md (arrives with a later issue)."""
