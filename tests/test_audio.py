"""Audio intake: every format and array shape a user hands us, and every way it can be wrong."""

import numpy as np
import pytest
import soundfile as sf

from engine.audio import MAX_FILE_BYTES, AudioError, from_array, load_audio
from engine.prosody import synth

SR = 16_000


def tone(freq, seconds=1.0, sr=SR, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def encode(path, x, sr, codec, container=None, channels=1):
    """Encode float samples with FFmpeg (PyAV): what a browser or phone would send us."""
    import av

    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        fmt = stream.codec_context.codec.audio_formats[0].name
        planar = np.tile(x.astype(np.float32)[None, :], (channels, 1))
        frame = av.AudioFrame.from_ndarray(planar if fmt.endswith("p") else planar.T.reshape(1, -1),
                                           format="fltp" if fmt.endswith("p") else "flt", layout=layout)
        frame.sample_rate = sr
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=sr)
        for f in resampler.resample(frame):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def voice():
    return synth.harmonic(180, 1.5, sr=48_000, syllable_hz=4.0, level_dbfs=-20.0)


# --- formats -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,subtype", [("a.wav", "PCM_16"), ("b.wav", "PCM_24"), ("c.wav", "FLOAT"),
                                          ("d.flac", "PCM_16"), ("e.ogg", "VORBIS")])
def test_libsndfile_formats(tmp_path, voice, name, subtype):
    path = tmp_path / name
    sf.write(str(path), voice, 48_000, subtype=subtype)
    clip = load_audio(path)
    assert clip.sample_rate_hz == SR and clip.source_rate_hz == 48_000
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(1.5, abs=0.01)
    assert clip.rms_dbfs == pytest.approx(-20.0, abs=0.5)
    assert clip.source == name


@pytest.mark.parametrize("name,codec,container", [
    ("a.mp3", "libmp3lame", None), ("b.m4a", "aac", "mp4"), ("c.webm", "libopus", "webm"),
    ("d.opus", "libopus", "ogg"), ("e.aac", "aac", "adts"), ("f.mka", "aac", "matroska"), ("g.ogg", "libopus", "ogg")])
def test_compressed_formats_browsers_and_phones_send(tmp_path, voice, name, codec, container):
    path = encode(tmp_path / name, voice, 48_000, codec, container)
    clip = load_audio(path)
    assert clip.sample_rate_hz == SR
    # encoders add a little priming silence; the content must be there, at the right level
    assert clip.duration_s == pytest.approx(1.5, abs=0.1)
    assert clip.rms_dbfs == pytest.approx(-20.0, abs=1.0)


def test_stereo_file_is_downmixed(tmp_path, voice):
    path = encode(tmp_path / "s.m4a", voice, 48_000, "aac", "mp4", channels=2)
    clip = load_audio(path)
    assert clip.source_channels == 2
    assert clip.rms_dbfs == pytest.approx(-20.0, abs=1.0)


# --- arrays as Gradio hands them ---------------------------------------------------------------

@pytest.mark.parametrize("dtype,scale", [(np.int16, 32767), (np.int32, 2**31 - 1),
                                         (np.float32, 1.0), (np.float64, 1.0)])
def test_gradio_numpy_pairs_of_every_dtype(dtype, scale):
    x = tone(440, 1.0, 44_100, amp=0.5)
    clip = load_audio((44_100, (x * scale).astype(dtype)))
    assert clip.source_rate_hz == 44_100 and clip.sample_rate_hz == SR
    assert len(clip.samples) == SR
    assert clip.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.1)


@pytest.mark.parametrize("layout", ["n_ch", "ch_n"])
def test_stereo_arrays_equal_mono(layout):
    x = tone(300, 1.0)
    stereo = np.stack([x, x], axis=1 if layout == "n_ch" else 0)
    a, b = from_array(x, SR), from_array(stereo, SR)
    assert b.source_channels == 2
    np.testing.assert_array_equal(a.samples, b.samples)


def test_a_dead_or_inverted_channel_does_not_halve_or_cancel_the_voice():
    x = tone(300, 1.0)
    mono = from_array(x, SR)
    left_only = from_array(np.stack([x, np.zeros_like(x)], axis=1), SR)
    inverted = from_array(np.stack([x, -x], axis=1), SR)
    assert left_only.rms_dbfs == pytest.approx(mono.rms_dbfs, abs=0.01)
    assert inverted.rms_dbfs == pytest.approx(mono.rms_dbfs, abs=0.01)
    # two different, uncorrelated channels are averaged as usual
    noise = (0.3 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    both = from_array(np.stack([x, noise], axis=1), SR)
    np.testing.assert_allclose(both.samples, from_array((x + noise) / 2, SR).samples, atol=1e-6)


def test_huge_arrays_are_refused_before_any_copy():
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.int16), shape=(SR * 3600,), strides=(0,))
    with pytest.raises(AudioError, match="3600.0 s long; the limit is 120 s"):
        from_array(huge, SR)


def test_resampling_is_band_limited_not_sample_dropping():
    # 7 kHz survives 48 -> 16 kHz; 10 kHz is above the new Nyquist and must vanish, not alias
    # to 6 kHz as dropping every third sample would make it (tones tapered to avoid clicks)
    taper = np.hanning(48_000).astype(np.float32)
    kept = from_array(tone(7000, 1.0, 48_000) * taper, 48_000)
    gone = from_array(tone(10_000, 1.0, 48_000) * taper, 48_000)
    dropped = from_array(tone(10_000, 1.0, 48_000)[::3] * taper[::3], SR)  # what dropping does
    assert kept.rms_dbfs == pytest.approx(dropped.rms_dbfs, abs=0.5)  # both about -13 dBFS
    assert gone.rms_dbfs < kept.rms_dbfs - 80


@pytest.mark.parametrize("rate", [8000, 11_025, 22_050, 32_000, 44_100, 96_000])
def test_odd_sample_rates(rate):
    clip = load_audio((rate, tone(200, 0.8, rate)))
    assert len(clip.samples) == pytest.approx(0.8 * SR, abs=2)


# --- facts, not errors ----------------------------------------------------------------------------

def test_silence_is_flagged_not_refused():
    clip = from_array(np.zeros(SR, np.float32), SR)
    assert clip.silent and clip.rms_dbfs == -120.0 and not clip.clipped


def test_clipping_is_flagged():
    x = np.clip(tone(200, 1.0, amp=3.0), -1.0, 1.0)
    assert from_array(x, SR).clipped
    assert not from_array(tone(200, 1.0, amp=0.9), SR).clipped


def test_dc_offset_is_removed_and_reported():
    clip = from_array(tone(200, 1.0, amp=0.3) + 0.2, SR)
    assert clip.dc_offset == pytest.approx(0.2, abs=1e-3)
    assert abs(float(clip.samples.mean())) < 1e-4


# --- errors -----------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found: nothere.wav"):
        load_audio(tmp_path / "nothere.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")


@pytest.mark.parametrize("name,content", [("bad.wav", b"RIFF\x00\x00garbage" * 50),
                                          ("photo.mp3", b"\x89PNG\r\n\x1a\n" + bytes(3000)),
                                          ("notes.txt", b"hello, this is not audio\n" * 100)])
def test_corrupt_or_wrong_format_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match="accepted: WAV") as err:
        load_audio(path)
    assert str(tmp_path) not in str(err.value)  # no server paths in messages users see


def test_a_truncated_file_keeps_what_decodes(tmp_path, voice):
    path = tmp_path / "cut.wav"
    sf.write(str(path), voice, 48_000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    clip = load_audio(path)
    assert 0.6 < clip.duration_s <= 1.5


def test_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(AudioError, match="MiB"):
        load_audio(path)


def test_empty_and_too_short_arrays():
    with pytest.raises(AudioError, match="empty"):
        from_array(np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="0.25 s"):
        from_array(np.ones(SR // 10, np.float32) * 0.1, SR)


def test_too_long_names_the_limit(tmp_path):
    with pytest.raises(AudioError, match="limit is 3 s"):
        load_audio((SR, tone(200, 4.0)), max_seconds=3)
    path = tmp_path / "long.flac"
    sf.write(str(path), tone(200, 4.0), SR)
    with pytest.raises(AudioError, match="limit is 3 s"):
        load_audio(path, max_seconds=3)
    webm = encode(tmp_path / "long.webm", tone(200, 8.0, 48_000), 48_000, "libopus", "webm")
    with pytest.raises(AudioError, match="longer than 4 s; the limit is 3 s"):  # stops decoding
        load_audio(webm, max_seconds=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(bad):
    x = tone(200, 1.0)
    x[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        from_array(x, SR)


@pytest.mark.parametrize("source,match", [
    (None, "no audio"), (42, "cannot read audio from a int"), ((1, 2, 3), "pair"),
    ((0, np.zeros(1000, np.int16)), "sample rate"), (np.zeros(SR), "needs its sample rate"),
    ((SR, np.array(["a", "b"])), "not audio"), ((SR, np.zeros((2, 2, 2))), "shaped")])
def test_inputs_that_are_not_audio(source, match):
    with pytest.raises(AudioError, match=match):
        load_audio(source)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


def _wav_header(path, channels: int, tag: int, bits: int, rate: int = 16_000) -> None:
    """A RIFF/WAVE file with the given format chunk and 2000 bytes of data."""
    import struct

    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    data = b"\x00\x01" * 1000
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("channels,tag,bits,words", [
    (0, 1, 16, "declares 0 channels"),  # once: "Invalid layout: 0 channels"
    (1, 0x1234, 16, "encoding that cannot be decoded"),  # once: "'AudioStream' object has no attribute"
    (1, 1, 7, "7-bit samples"),  # once: read as a short burst of noise
    (1, 1, 40, "40-bit samples"),
    (1, 3, 16, "16-bit samples"),  # float samples are 32 or 64 bits
])
def test_impossible_wav_headers_are_refused_in_words(tmp_path, channels, tag, bits, words):
    path = tmp_path / "odd.wav"
    _wav_header(path, channels, tag, bits)
    with pytest.raises(AudioError, match=words) as err:
        load_audio(path)
    assert str(tmp_path) not in str(err.value)  # the file's name, never the server's path
