"""The measurements kept as Praat files, CSV and JSON, read back and checked against the JSON."""

import csv
import json
import subprocess
import sys

import numpy as np
import parselmouth
import pytest
import soundfile as sf
from parselmouth.praat import call

from engine.audio import from_array
from engine.prosody import analyze, synth


@pytest.fixture(scope="module")
def paused(tmp_path_factory):
    """Speech, a 0.6 s pause, speech: two speech intervals and a pause."""
    v = synth.syllables(4, ripple=0.2)
    x = np.concatenate([v, np.zeros(int(0.6 * 16000), np.float32), v])
    path = tmp_path_factory.mktemp("export") / "paused.wav"
    sf.write(path, x, 16000)
    return path


def intervals(grid, tier):
    n = call(grid, "Get number of intervals", tier)
    return [(call(grid, "Get start time of interval", tier, i), call(grid, "Get end time of interval", tier, i),
             call(grid, "Get label of interval", tier, i)) for i in range(1, n + 1)]


def test_the_textgrid_and_pitchtier_hold_what_the_json_says(paused, tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine", "analyze", str(paused), "--json",
                           "--textgrid", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert json.loads((tmp_path / "paused.json").read_text()) == result
    grid = parselmouth.read(str(tmp_path / "paused.TextGrid"))
    assert [call(grid, "Get tier name", i) for i in (1, 2, 3)] == ["speech", "nuclei", "intonation"]
    speech = [(a, b) for a, b, label in intervals(grid, 1) if label == "speech"]
    pauses = [(a, b) for a, b, label in intervals(grid, 1) if label == "pause"]
    assert len(speech) == 2 and pauses == [pytest.approx(p, abs=0.011) for p in result["rate"]["pauses"]]
    mask = np.array(result["contours"]["speech"])
    assert sum(b - a for a, b in speech) == pytest.approx(mask.sum() * 0.01, abs=1e-6)
    points = [call(grid, "Get time of point", 2, i) for i in range(1, call(grid, "Get number of points", 2) + 1)]
    assert points == pytest.approx(result["rate"]["nuclei_s"], abs=1e-6) and len(points) == 8
    labels = [label for _, _, label in intervals(grid, 3) if label]
    assert labels == [result["intonation"]["label"]]
    tier = parselmouth.read(str(tmp_path / "paused.PitchTier"))
    f0 = np.array([np.nan if v is None else v for v in result["contours"]["f0_hz"]], float)
    voiced = np.isfinite(f0) & mask
    assert call(tier, "Get number of points") == voiced.sum()
    for i in (1, int(voiced.sum()) // 2, int(voiced.sum())):
        t, hz = call(tier, "Get time from index", i), call(tier, "Get value at index", i)
        frame = int(round((t - 0.005) / 0.01))
        assert voiced[frame] and hz == pytest.approx(f0[frame], abs=0.01)


def test_the_csv_has_one_row_a_frame(tmp_path):
    from engine.export import write_all

    report = analyze(from_array(synth.harmonic(160, 1.5, syllable_hz=4.0), 16000))
    paths = write_all(report, tmp_path, "tone")
    assert [p.name for p in paths] == ["tone.TextGrid", "tone.PitchTier", "tone.csv", "tone.json"]
    with open(tmp_path / "tone.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.contours.time_s) == 150
    voiced = [r for r in rows if r["f0_hz"]]
    assert voiced and float(voiced[0]["f0_hz"]) == pytest.approx(160, rel=0.02)
    assert {r["speech"] for r in rows} <= {"0", "1"}


def test_the_export_endpoint_returns_the_files(server, paused):
    from gradio_client import Client, handle_file

    files = Client(server[0], verbose=False).predict(handle_file(str(paused)), "female",
                                                     api_name="/export")
    names = sorted(str(f).rsplit("/", 1)[-1] for f in files)
    assert names == ["paused.PitchTier", "paused.TextGrid", "paused.csv", "paused.json"]
    grid = parselmouth.read(next(str(f) for f in files if str(f).endswith(".TextGrid")))
    assert call(grid, "Get number of points", 2) == 8
    body = json.loads(open(next(str(f) for f in files if str(f).endswith(".json"))).read())
    assert body["voice_type"]["requested"] == "female"
