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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight checkpoint in the released (full Omni, sharded) layout."""
    from engine.tiny import build

    return build(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through the users' loader (fp32 on the CPU)."""
    from engine.model import load_model

    return load_model(str(tiny_checkpoint))


@pytest.fixture(scope="session")
def reasoner(tiny_model):
    from engine.reasoner import Reasoner

    return Reasoner(tiny_model)
