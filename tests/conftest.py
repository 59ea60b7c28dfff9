"""Shared fixtures: speech made on the spot, never downloaded."""

import numpy as np
import pytest

from engine import synth

SENTENCE = "She said the meeting would start at nine, but nobody came until ten."


@pytest.fixture(scope="session")
def espeak_sentence() -> tuple[np.ndarray, int]:
    """A sentence spoken by espeak-ng: (float32 samples, sample rate). The README's test command
    installs espeak-ng; without it these tests fail rather than silently skip."""
    if not synth.espeak_available():
        pytest.fail("espeak-ng is missing: install it with `apt-get install espeak-ng`")
    return synth.espeak(SENTENCE)
