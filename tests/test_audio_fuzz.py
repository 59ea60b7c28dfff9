"""Audio intake on arbitrary bytes (hypothesis): always a Clip or an AudioError, never another
exception, and always within a bounded time."""

import struct
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.audio import AudioError, Clip, load_audio

SUFFIXES = [".wav", ".mp3", ".flac", ".ogg", ".m4a", ".webm", ".bin"]


def _read(tmp_path_factory, data: bytes, suffix: str):
    path = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        result = load_audio(path, max_seconds=30)
    except AudioError as exc:
        result = exc
    assert time.perf_counter() - t0 < 10
    assert isinstance(result, (Clip, AudioError))
    if isinstance(result, AudioError):
        assert str(path.parent) not in str(result)  # never the server's path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_arbitrary_bytes(tmp_path_factory, data, suffix):
    _read(tmp_path_factory, data, suffix)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.integers(0, 0xFFFF), channels=st.integers(0, 300), rate=st.integers(0, 2**32 - 1),
       bits=st.integers(0, 128), data_size=st.integers(0, 2**32 - 1), data=st.binary(max_size=2048))
def test_arbitrary_wav_headers(tmp_path_factory, tag, channels, rate, bits, data_size, data):
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size) + data
    _read(tmp_path_factory, b"RIFF" + struct.pack("<I", len(body)) + body, ".wav")
