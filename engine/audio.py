"""Audio intake: any file or array a user can hand us becomes a clean `Clip`.

A `Clip` is float32 mono at 16 kHz (what the model and the prosody analysis both read), with the
facts about the original recording beside it: its rate and channel count, peak and RMS level, and
flags for clipping and silence. Silence, clipping and DC offset are facts, not errors (DC is
removed). Everything that cannot become a clip raises `AudioError`, a `ValueError` whose message
says what was wrong and what is accepted.

    from engine.audio import load_audio
    clip = load_audio("speech.webm")            # a path: wav, flac, ogg/opus, mp3, m4a/aac, webm ...
    clip = load_audio((48000, int16_array))     # what gr.Audio(type="numpy") hands a handler

Decoding: libsndfile (via soundfile) for WAV/FLAC/OGG/Opus/MP3, and FFmpeg's libraries (via PyAV,
bundled in its wheel, no system ffmpeg needed) for everything else. Resampling is band-limited
(soxr, "HQ"), never sample dropping.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 16_000  # what Qwen2.5-Omni's Whisper-style feature extractor expects (docs/paper.md §1)
MIN_SECONDS = 0.25  # shorter clips hold less than one syllable: nothing to measure or reason about
MAX_SECONDS = 120.0  # default cap per clip (the app's --max-seconds); the model sees 25 tokens/s
MAX_FILE_BYTES = 200 * 1024 * 1024  # 200 MiB: ~10 min of 48 kHz stereo 24-bit WAV; larger is refused
CLIP_LEVEL = 0.999  # |sample| at or above this fraction of full scale counts as clipped
FULL_SCALE_PEAK = 0.998  # the highest |sample| we write: under CLIP_LEVEL, so our output never reads as clipped
CLIPPED_FRACTION = 1e-3  # a clip is flagged `clipped` when more than 0.1 % of its samples are
# Below this RMS the clip is `silent`: ~3 steps of 16-bit audio (its quantisation floor is ~-101
# dBFS). Quiet recordings are real (RAVDESS sits at -45 to -60 dBFS RMS); whether a quiet clip holds
# speech is decided against its own noise floor (engine.prosody's speech_found), not by this cut.
SILENT_RMS_DBFS = -90.0
DBFS_FLOOR = -120.0  # level reported for digital silence instead of -inf
# Downmix: when the channel mean's RMS falls below this fraction of the loudest channel's, the mean
# is losing signal and the loudest channel is used instead. A dead channel leaves the mean at 0.5
# (-6 dB), opposite phases near 0; uncorrelated equal channels keep 0.71, identical ones 1.0.
ONE_SIDED_RATIO = 0.6

ACCEPTED = "WAV, FLAC, OGG/Opus, MP3, M4A/AAC, WebM/Matroska, or a (sample_rate, array) pair"
_SNDFILE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}


class AudioError(ValueError):
    """A clip that cannot be used; the message says why and what is accepted."""


@dataclass(frozen=True, eq=False)
class Clip:
    """One utterance, ready for analysis: float32 mono samples at `sample_rate_hz`."""

    samples: np.ndarray = field(repr=False)  # float32, mono, DC removed, shape [n]
    sample_rate_hz: int  # always SAMPLE_RATE_HZ for clips made by this module
    source_rate_hz: int  # the rate of the file or array we were given
    source_channels: int  # channel count before the downmix to mono
    peak_dbfs: float  # max |sample| in dB re full scale (DBFS_FLOOR for digital silence)
    rms_dbfs: float  # RMS over the whole clip, dB re full scale
    dc_offset: float  # mean removed from the samples, in full-scale units
    clipped: bool  # more than CLIPPED_FRACTION of samples at full scale
    silent: bool  # RMS below SILENT_RMS_DBFS: nothing audible
    source: str | None = None  # file name (not the full path) or None for arrays

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe facts about the clip (no samples)."""
        return {
            "source": self.source,
            "duration_s": round(self.duration_s, 4),
            "sample_rate_hz": self.sample_rate_hz,
            "source_rate_hz": self.source_rate_hz,
            "source_channels": self.source_channels,
            "peak_dbfs": round(self.peak_dbfs, 2),
            "rms_dbfs": round(self.rms_dbfs, 2),
            "dc_offset": round(self.dc_offset, 6),
            "clipped": self.clipped,
            "silent": self.silent,
        }


def dbfs(x: float) -> float:
    """Amplitude (full scale = 1) to dB re full scale, DBFS_FLOOR for zero."""
    return 20.0 * math.log10(x) if x > 10 ** (DBFS_FLOOR / 20) else DBFS_FLOOR


def load_audio(
    source: str | os.PathLike | tuple | np.ndarray,
    sample_rate_hz: int | None = None,
    *,
    max_seconds: float = MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
) -> Clip:
    """Turn a path, a `(rate, array)` pair (Gradio's numpy audio) or an array plus its rate into a
    `Clip`: decode, check, downmix to mono, resample to 16 kHz, remove DC and measure levels.
    Raises `AudioError` for anything that cannot be used, naming the problem and the limits."""
    if isinstance(source, (str, os.PathLike)):
        samples, rate = _decode_file(Path(source), max_seconds)
        name = Path(source).name
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError(f"expected a (sample_rate, samples) pair; got a tuple of {len(source)}")
        first, second = source
        rate, samples = (first, second) if np.isscalar(first) else (second, first)
        name = None
    elif isinstance(source, np.ndarray):
        if sample_rate_hz is None:
            raise AudioError("an array needs its sample rate: load_audio(array, sample_rate_hz)")
        samples, rate, name = source, sample_rate_hz, None
    elif source is None:
        raise AudioError(f"no audio was given; accepted: {ACCEPTED}")
    else:
        raise AudioError(f"cannot read audio from a {type(source).__name__}; accepted: {ACCEPTED}")
    return from_array(samples, int(rate), max_seconds=max_seconds,
                      min_seconds=min_seconds, source=name)


def from_array(
    samples: np.ndarray,
    rate: int,
    *,
    max_seconds: float = MAX_SECONDS,
    min_seconds: float = MIN_SECONDS,
    source: str | None = None,
) -> Clip:
    """Make a `Clip` from samples shaped `[n]` or `[n, channels]` (int16, int32, uint8 or float)
    at `rate` Hz. Integer PCM is scaled to full scale = 1; floats are taken as they are. Channels
    are averaged, unless one is dead or they cancel (see `_downmix`)."""
    if not isinstance(rate, (int, np.integer)) or rate < 1000 or rate > 768_000:
        raise AudioError(f"sample rate {rate!r} Hz is not usable; expected 1000-768000 Hz")
    x = np.asarray(samples)
    if x.dtype.kind not in "iuf":
        raise AudioError(f"samples of type {x.dtype} are not audio; expected int16, int32 or float")
    if x.ndim == 2 and x.shape[0] <= 8 < x.shape[1]:
        x = x.T  # [channels, n], as some libraries return it
    if x.ndim not in (1, 2):
        raise AudioError(f"audio must be shaped [samples] or [samples, channels]; got {x.shape}")
    channels = 1 if x.ndim == 1 else x.shape[1]
    duration = x.shape[0] / rate
    if x.size == 0:
        raise AudioError("the audio is empty (zero samples)")
    if duration < min_seconds:
        raise AudioError(f"the clip is {duration:.3f} s long; at least {min_seconds:g} s is needed")
    if duration > max_seconds + 1e-9:  # checked before any copy of a huge array is made
        raise AudioError(f"the clip is {duration:.1f} s long; the limit is {max_seconds:g} s "
                         "(trim it, or raise the limit with --max-seconds)")
    x = _to_float(x)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise AudioError(f"the audio contains {bad} NaN or infinite samples; it is corrupt")
    x = _downmix(x) if x.ndim == 2 else x

    peak = float(np.abs(x).max())
    clipped = float((np.abs(x) >= CLIP_LEVEL).mean()) > CLIPPED_FRACTION
    dc = float(x.mean(dtype=np.float64))
    x = x - np.float32(dc)
    if rate != SAMPLE_RATE_HZ:
        x = resample(x, rate, SAMPLE_RATE_HZ)
    x = np.ascontiguousarray(x, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return Clip(samples=x, sample_rate_hz=SAMPLE_RATE_HZ, source_rate_hz=int(rate),
                source_channels=int(channels), peak_dbfs=dbfs(peak), rms_dbfs=dbfs(rms),
                dc_offset=dc, clipped=clipped, silent=dbfs(rms) < SILENT_RMS_DBFS, source=source)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of mono float samples (soxr, high quality)."""
    import soxr

    return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def to_pcm16(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """16-bit PCM of float samples at their level, never clipped: a signal that would pass full
    scale is lowered as a whole until its peak fits. Returns (int16 samples, dB it was lowered
    by: 0.0 when it fitted). Hand this, not floats, to Gradio: it peak-normalises float audio,
    which would undo every level change."""
    x = np.asarray(samples, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    lowered_db = 0.0
    if peak > FULL_SCALE_PEAK:
        lowered_db = 20 * math.log10(peak / FULL_SCALE_PEAK)
        x = x * (FULL_SCALE_PEAK / peak)
    return np.round(x * 32767).astype(np.int16), lowered_db


def write_wav(path: str | os.PathLike, clip: Clip) -> float:
    """Write a clip as 16-bit PCM WAV (see `to_pcm16`); returns the dB it was lowered by to
    fit full scale (0.0 normally)."""
    import soundfile as sf

    pcm, lowered_db = to_pcm16(clip.samples)
    sf.write(str(path), pcm, clip.sample_rate_hz, subtype="PCM_16")
    return lowered_db


def _downmix(x: np.ndarray) -> np.ndarray:
    """[n, ch] -> [n]: the channel mean, unless that loses the signal: a channel that is nearly
    silent (a one-sided microphone) or channels in opposite phase. Then the loudest channel."""
    if x.shape[1] == 1:
        return x[:, 0]
    mean = x.mean(axis=1, dtype=np.float64).astype(np.float32)
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))
    loudest = int(np.argmax(rms))
    mean_rms = float(np.sqrt(np.mean(np.square(mean, dtype=np.float64))))
    if rms[loudest] > 0 and mean_rms < ONE_SIDED_RATIO * rms[loudest]:
        return np.ascontiguousarray(x[:, loudest])
    return mean


def _to_float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if x.dtype == np.int8:
        return x.astype(np.float32) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    return (x.astype(np.float64) / 2147483648.0).astype(np.float32)  # int64 etc: 32-bit scale


def _decode_file(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise AudioError(f"file not found: {path.name}")
    if not path.is_file():
        raise AudioError(f"not a file: {path.name}")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path.name} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise AudioError(f"{path.name} is {size / 2**20:.0f} MiB; files up to "
                         f"{MAX_FILE_BYTES // 2**20} MiB are accepted")
    _check_wav_header(path)
    if path.suffix.lower() in _SNDFILE_SUFFIXES:
        try:
            return _decode_sndfile(path, max_seconds)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - any libsndfile failure: FFmpeg gets its turn
            pass  # e.g. an .ogg holding a codec libsndfile lacks: let FFmpeg try
    return _decode_ffmpeg(path, max_seconds)


# WAV sample formats that exist: PCM 8-32 bits in whole bytes, IEEE float 32/64, A-law and
# mu-law 8 (format tags 1, 3, 6, 7; 0xFFFE is WAVE_FORMAT_EXTENSIBLE with the same widths).
_WAV_BITS = {1: {8, 16, 24, 32}, 3: {32, 64}, 6: {8}, 7: {8}, 0xFFFE: {8, 16, 24, 32, 64}}


def _check_wav_header(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose format chunk declares no channels or sample widths no WAV
    has (a decoder would otherwise read it as noise or fail with an internal message)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    at = head.find(b"fmt ", 12)
    if at < 0 or len(head) < at + 24:
        return  # no format chunk where expected: the decoders will say what is wrong
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[at + 8:at + 24])
    if channels == 0:
        raise AudioError(f"{path.name}: its WAV header declares 0 channels")
    if rate == 0:
        raise AudioError(f"{path.name}: its WAV header declares a sample rate of 0 Hz")
    if tag in _WAV_BITS and bits not in _WAV_BITS[tag]:
        raise AudioError(f"{path.name}: its WAV header declares {bits}-bit samples, which this "
                         "format does not have (a damaged or mislabelled file)")


def _decode_sndfile(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        if f.frames > 0 and f.frames / f.samplerate > max_seconds + 1e-9:
            raise AudioError(f"{path.name} is {f.frames / f.samplerate:.1f} s long; the limit is "
                             f"{max_seconds:g} s (trim it, or raise the limit with --max-seconds)")
        data = f.read(dtype="float32", always_2d=True)
        return data, f.samplerate


def _decode_ffmpeg(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001 - FFmpeg's many errors all mean "not audio"
        raise AudioError(f"{path.name} could not be read as audio ({_short(exc, path)}); "
                         f"accepted: {ACCEPTED}") from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path.name} has no audio stream; accepted: {ACCEPTED}")
        stream = container.streams.audio[0]
        try:  # a stream FFmpeg cannot describe has no rate or layout at all (unknown codecs)
            rate = stream.rate or stream.codec_context.sample_rate
            channels = stream.codec_context.channels
            layout = stream.layout.name
        except (AttributeError, ValueError):
            raise AudioError(f"{path.name}: its audio is in an encoding that cannot be decoded; "
                             f"accepted: {ACCEPTED}") from None
        if not rate:
            raise AudioError(f"{path.name}: the audio stream has no sample rate")
        if not channels:
            raise AudioError(f"{path.name}: the audio stream has no channels")
        # Planar float, channels kept: the downmix happens in from_array like for every input.
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks, n, limit = [], 0, int((max_seconds + 1.0) * rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    a = out.to_ndarray()
                    chunks.append(a)
                    n += a.shape[1]
                if n > limit:
                    raise AudioError(f"{path.name} is longer than {max_seconds + 1:g} s; the limit is "
                                     f"{max_seconds:g} s (trim it, or raise the limit with "
                                     "--max-seconds)")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - a decode error part-way: keep what decoded
            if not chunks:
                raise AudioError(f"{path.name} is corrupt or not audio ({_short(exc, path)}); "
                                 f"accepted: {ACCEPTED}") from None
            # a truncated stream: keep what decoded, as players do
    if not chunks:
        raise AudioError(f"{path.name} holds no audio samples")
    return np.concatenate(chunks, axis=1).T, int(rate)


def _short(exc: Exception, path: Path) -> str:
    """The first line of a decoder's message, without the file's full path (not ours to show)."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].replace(str(path), path.name)[:160]
