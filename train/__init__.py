"""Rebuilding EmotionThinker: prosody labelling (label.py), training data (data.py), prosody-enhanced
fine-tuning (sft.py). Imports engine/, never app/."""
