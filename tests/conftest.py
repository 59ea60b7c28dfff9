"""Shared fixtures: speech made on the spot, never downloaded."""

import os
from pathlib import Path

import numpy as np
import pytest

from engine.prosody import synth

# Real recordings to measure with (read and acted speech, licensed for measurement only, so never
# copied into the repository): ET_REALSPEECH, else the project's shared folder beside the checkout,
# else where this project's machines keep it (a clone elsewhere, as CI's, still finds it).
_PLACES = [os.environ.get("ET_REALSPEECH"), Path(__file__).resolve().parents[2] / "shared" / "realspeech-dev",
           "/work/shared/realspeech-dev"]
REALSPEECH = next((Path(p) for p in _PLACES if p and (Path(p) / "MANIFEST.tsv").exists()),
                  Path(_PLACES[1]))
NO_REALSPEECH = (f"the real recordings are not on this machine ({REALSPEECH}: they are licensed for "
                 "measurement and never copied into the repository); set ET_REALSPEECH to their folder")


def pytest_configure(config):
    """Quantised weights that the loader caches go to a temporary folder, not the home."""
    import os
    import tempfile

    os.environ.setdefault("ET_QUANT_CACHE", tempfile.mkdtemp(prefix="et-quant-cache-"))


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
    from engine.reasoning.tiny import build

    return build(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through the users' loader, in fp32 (the reference precision;
    the CPU default is nf4)."""
    from engine.reasoning.model import load_model

    return load_model(str(tiny_checkpoint), quant="fp32")


@pytest.fixture(scope="session")
def reasoner(tiny_model):
    from engine.reasoning.reasoner import Reasoner

    return Reasoner(tiny_model)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tiny_checkpoint):
    """The real app on a free port of 127.0.0.1 with the tiny model: (url, ModelService)."""
    from app.settings import parse
    from app.ui import launch

    port = free_port()
    settings = parse(["--model", str(tiny_checkpoint), "--port", str(port), "--max-seconds", "12",
                      "--max-file-mb", "2", "--batch-max-clips", "5", "--batch-max-mb", "3"])
    demo, service = launch(settings, block=False)
    assert service.wait_until_settled(120) == "ready", service.status()
    yield f"http://127.0.0.1:{port}/", service
    demo.close()


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory, espeak_sentence):
    """36 espeak-ng clips with known prosody settings (train.corpus): the manifest's path."""
    from train.corpus import build

    return build(tmp_path_factory.mktemp("corpus"), n=36, seed=1)


@pytest.fixture(scope="session")
def labelled_corpus(synthetic_corpus):
    """The synthetic corpus through `train.label all` (groups of >= 6 calibrate on their own)."""
    from train.label import main

    out = synthetic_corpus.parent / "labelled.jsonl"
    assert main(["all", "--input", str(synthetic_corpus), "--output", str(out), "--workers", "2",
                 "--min-group", "6"]) == 0
    return out


@pytest.fixture(scope="session")
def openai_backend(tiny_checkpoint):
    """engine.serve with the tiny model on a free loopback port, no key: its /v1 base URL."""
    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner
    from engine.serve import ServeSettings, start

    port = free_port()
    server = start(Reasoner(load_model(str(tiny_checkpoint), quant="fp32")),
                   ServeSettings(model_name="tiny"), port)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
