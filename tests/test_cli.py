"""The `python -m engine` command line, run as a user runs it (a subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from engine.prosody import synth

CONTRACT = {
    "pitch": {"median_hz", "p5_hz", "p95_hz", "range_st", "std_st", "voiced_fraction", "reliable"},
    "energy": {"level_dbfs", "noise_floor_dbfs", "snr_db"},
    "rate": {"syllables_per_s", "articulation_rate_sps", "pause_count", "pause_s"},
    "intonation": {"label", "shape", "dynamics", "confidence"},
    "voice": {"jitter_local", "shimmer_local", "hnr_db"},
    "levels": {"pitch", "energy", "speed"},
    "contours": {"time_s", "f0_hz", "intensity_db"},
}


def run(*args):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory, espeak_sentence):
    d = tmp_path_factory.mktemp("cli")
    x, sr = espeak_sentence
    sf.write(d / "speech.wav", x, sr)
    sf.write(d / "rising.flac", synth.harmonic(lambda t: 120 * 2 ** (t / 2 * 7 / 12), 2.0,
                                               syllable_hz=4.0), 16000)
    sf.write(d / "silence.wav", np.zeros(16000, np.float32), 16000)
    (d / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return d


def test_json_lines_follow_the_contract(files):
    done = run("analyze", "--json", files / "speech.wav", files / "rising.flac", files / "silence.wav")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    speech, rising, silence = map(json.loads, lines)
    for obj in (speech, rising, silence):
        assert {"file", "duration_s", "sample_rate_hz"} <= set(obj)
        for key, fields in CONTRACT.items():
            assert fields <= set(obj[key]), key
        n = len(obj["contours"]["time_s"])
        assert len(obj["contours"]["f0_hz"]) == len(obj["contours"]["intensity_db"]) == n
    assert speech["file"].endswith("speech.wav") and speech["sample_rate_hz"] == 22050
    assert 70 < speech["pitch"]["median_hz"] < 160 and speech["pitch"]["reliable"] is True
    assert rising["intonation"]["label"] == "rising"
    assert rising["pitch"]["range_st"] == pytest.approx(6.3, abs=0.7)  # 90 % of a 7 st glide
    # silence: null where unmeasurable, never a number made up
    assert silence["pitch"]["median_hz"] is None
    assert silence["energy"]["level_dbfs"] is None
    assert silence["intonation"]["label"] == "too_short"
    assert silence["levels"] == {"pitch": None, "energy": None, "speed": None}
    assert all(v is None for v in silence["contours"]["f0_hz"])


def test_a_failing_file_does_not_stop_the_others(files):
    done = run("analyze", "--json", files / "broken.wav", files / "rising.flac", files / "missing.ogg")
    assert done.returncode == 2
    broken, rising, missing = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert set(broken) == {"file", "error"} and "could not be read" in broken["error"]
    assert rising["intonation"]["label"] == "rising"
    assert missing == {"file": str(files / "missing.ogg"), "error": "file not found: missing.ogg"}


def test_text_mode_summarises_and_reports_errors_on_stderr(files):
    done = run("analyze", files / "speech.wav", files / "broken.wav")
    assert done.returncode == 2
    assert "speech.wav" in done.stdout and "Pitch:" in done.stdout and "Intonation:" in done.stdout
    assert "broken.wav" in done.stderr and "broken.wav" not in done.stdout
    assert "Traceback" not in done.stderr


def test_manipulate_writes_a_wav_with_the_asked_change(files, tmp_path):
    out = tmp_path / "higher.wav"
    done = run("manipulate", files / "speech.wav", out, "--pitch-shift", "5", "--tempo", "1.25")
    assert done.returncode == 0, done.stderr
    info = sf.info(str(out))
    assert info.samplerate == 16000
    a = json.loads(run("analyze", "--json", files / "speech.wav").stdout)
    b = json.loads(run("analyze", "--json", out).stdout)
    assert 12 * np.log2(b["pitch"]["median_hz"] / a["pitch"]["median_hz"]) == pytest.approx(5, abs=0.3)
    assert a["duration_s"] / b["duration_s"] == pytest.approx(1.25, rel=0.02)


def test_manipulate_rejects_bad_settings_clearly(files, tmp_path):
    done = run("manipulate", files / "speech.wav", tmp_path / "x.wav", "--tempo", "0")
    assert done.returncode == 2 and "tempo must be" in done.stderr
    assert not (tmp_path / "x.wav").exists()


def test_json_with_a_model_adds_the_reasoning(files, tiny_checkpoint):
    done = run("analyze", "--json", "--no-contours", "--model", tiny_checkpoint,
               "--max-new-tokens", "16", files / "speech.wav", files / "broken.wav")
    assert done.returncode == 2  # the broken file; the good one is still reasoned about
    good, bad = (json.loads(line) for line in done.stdout.strip().splitlines())
    r = good["reasoning"]
    assert set(r) >= {"think", "answer", "label", "scores", "claims", "timing"}
    assert len(r["scores"]) == 9 and sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert r["timing"]["n_tokens"] == 16 and r["timing"]["stop_reason"] == "length"
    assert isinstance(r["claims"], list) and "pitch" in good
    assert "error" in bad and "reasoning" not in bad


def test_text_mode_streams_the_reasoning(files, tiny_checkpoint):
    done = run("analyze", "--model", tiny_checkpoint, "--max-new-tokens", "8", files / "rising.flac")
    assert done.returncode == 0, done.stderr
    assert "Reasoning:" in done.stdout and "Confidence:" in done.stdout and "Timing:" in done.stdout
    assert "model:" in done.stderr and "nf4" in done.stderr


def test_a_model_that_cannot_load_is_an_error_before_any_file(files, tmp_path):
    done = run("analyze", "--model", tmp_path / "nothing", files / "speech.wav")
    assert done.returncode == 2 and "cannot be loaded" in done.stderr and done.stdout == ""


def test_a_corrupt_checkpoint_says_so_in_a_line_and_logs_the_traceback(files, tmp_path):
    from engine.reasoning.tiny import build

    ckpt = build(tmp_path / "ckpt")
    (ckpt / "config.json").write_text("{not json")
    done = run("analyze", "--model", ckpt, files / "speech.wav")
    assert done.returncode == 2 and done.stdout == ""
    assert "error: the model cannot be loaded" in done.stderr and "not a valid JSON" in done.stderr
    assert "Traceback" in done.stderr  # the cause, for whoever debugs it


def test_bad_generation_settings_are_refused_before_loading(files, tiny_checkpoint):
    done = run("analyze", "--model", tiny_checkpoint, "--temperature", "-1", files / "speech.wav")
    assert done.returncode == 2 and "temperature must be >= 0" in done.stderr
    assert "cannot be loaded" not in done.stderr


def test_manipulate_never_clips_and_says_when_it_lowered_the_level(files, tmp_path):
    from engine.audio import load_audio

    out = tmp_path / "loud.wav"
    done = run("manipulate", files / "speech.wav", out, "--gain-db", "40")
    assert done.returncode == 0 and "it was lowered by" in done.stderr
    loud = load_audio(out)
    assert not loud.clipped and loud.peak_dbfs > -0.1


@pytest.mark.parametrize("name,words", [("out.mp3", "give it a .wav name"), ("out", "give it a .wav name"),
                                        ("missing/out.wav", "its folder does not exist")])
def test_manipulate_refuses_an_output_it_cannot_write_in_words(files, tmp_path, name, words):
    done = run("manipulate", files / "speech.wav", tmp_path / name, "--gain-db", "3")
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
