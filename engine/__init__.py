"""Shared engine: audio intake, Praat prosody, model loading and reasoning (no UI code)."""
