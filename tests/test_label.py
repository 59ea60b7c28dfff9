"""The prosody labelling pipeline on a synthetic corpus whose settings are the ground truth."""

import json

import pytest

from train.label import SCHEMA, main
from train.phonemes import count_syllables


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_output_is_in_the_emotioncot_schema_with_measurements(labelled_corpus, synthetic_corpus):
    records = read(labelled_corpus)
    assert len(records) == len(read(synthetic_corpus)) == 36
    for r in records:
        assert set(SCHEMA) <= set(r)
        assert r["pitch_level"] in ("low", "normal", "high")
        assert r["energy_level"] in ("low", "normal", "high")
        assert r["speed_level"] in ("slow", "normal", "fast")
        assert r["intonation"] in ("rising", "falling", "rising-falling", "falling-rising", "flat",
                                   "expressive", "uncertain", "too_short")
        assert r["synthesis"] and r["dataset"] == "synthetic"  # other fields carried through
        assert r["age_level"] is None  # no tagger: null, not guessed
        # stress: the corpus's own truth (espeak-ng's emphasis) carried through, else null
        emphasis = r["synthesis"].get("emphasis")
        assert r["stressed_words"] == (None if emphasis is None else
                                       [r["transcription"].split(" ")[emphasis].strip(".,;:!?")])
        assert r["prosody"]["rate_source"] == "transcript" and r["prosody"]["syllables"] > 5


def test_labels_agree_with_the_synthesis_settings(labelled_corpus):
    originals = [r for r in read(labelled_corpus) if "psola_of" not in r["synthesis"]]
    def share(attr_level, setting, value, level):
        group = [r for r in originals if r["synthesis"][setting] == value]
        return sum(r[attr_level] == level for r in group) / max(len(group), 1)
    # speakers set higher are labelled high more often than those set lower, and so on
    assert share("pitch_level", "pitch", "high", "high") > share("pitch_level", "pitch", "low", "high")
    assert share("pitch_level", "pitch", "low", "low") > share("pitch_level", "pitch", "high", "low")
    assert share("speed_level", "rate", "fast", "fast") > share("speed_level", "rate", "slow", "fast")
    assert share("energy_level", "loudness", "loud", "high") > share("energy_level", "loudness", "soft", "high")
    assert share("energy_level", "loudness", "soft", "low") >= 0.75


def test_cut_points_and_report_are_written(labelled_corpus):
    cuts = json.loads(labelled_corpus.with_suffix(".cuts.json").read_text())
    assert cuts["percentiles"] == pytest.approx([100 / 3, 200 / 3])
    assert set(cuts["cuts"]) == {"pitch", "energy", "speed"}
    pitch = cuts["cuts"]["pitch"]
    assert {"synthetic/Male", "synthetic/Female", "pooled/Male", "pooled/Female"} <= set(pitch)
    assert "pooled" not in pitch  # pitch is never pooled across genders
    assert pitch["synthetic/Female"][0] > pitch["synthetic/Male"][1]  # per-gender cuts
    report = labelled_corpus.with_suffix(".report.md").read_text()
    assert "| pitch synthetic/Female |" in report and "| speed synthetic/transcript |" in report


def test_small_groups_fall_back_to_pooled_cuts(synthetic_corpus, tmp_path):
    out = tmp_path / "pooled.jsonl"
    assert main(["all", "--input", str(synthetic_corpus), "--output", str(out), "--workers", "1",
                 "--min-group", "1000"]) == 0
    cuts = json.loads(out.with_suffix(".cuts.json").read_text())["cuts"]
    assert cuts["pitch"]["synthetic/Male"] is None and cuts["pitch"]["pooled/Male"] is not None
    # once pooled across genders: every woman "high", every man "low"; now within each gender
    assert cuts["pitch"]["pooled/Male"][1] < cuts["pitch"]["pooled/Female"][0]
    labelled = read(out)
    for gender in ("Male", "Female"):
        levels = {r["pitch_level"] for r in labelled if r["gender"] == gender and r["pitch_level"]}
        assert levels == {"low", "normal", "high"}
    assert "(pooled/Male)" in out.with_suffix(".report.md").read_text()


def test_speed_is_calibrated_apart_for_transcript_and_acoustic_rates(synthetic_corpus, tmp_path):
    """Syllables from a transcript and acoustic nuclei are two estimators: never one tertile set."""
    from train.records import JsonlWriter

    mixed = tmp_path / "mixed.jsonl"
    with JsonlWriter(mixed) as f:
        for i, r in enumerate(read(synthetic_corpus)):
            r = dict(r, audio_path=str(synthetic_corpus.parent / r["audio_path"]))
            f.write(r if i % 2 else {k: v for k, v in r.items() if k != "transcription"})
    out = tmp_path / "mixed_labelled.jsonl"
    assert main(["all", "--input", str(mixed), "--output", str(out), "--workers", "1",
                 "--min-group", "6"]) == 0
    speed = json.loads(out.with_suffix(".cuts.json").read_text())["cuts"]["speed"]
    assert {"synthetic/transcript", "synthetic/acoustic", "pooled/transcript", "pooled/acoustic"} <= set(speed)
    assert "pooled" not in speed and "synthetic" not in speed


def test_broken_clips_go_to_the_error_file_and_a_rerun_resumes(synthetic_corpus, tmp_path):
    base = synthetic_corpus.parent
    (base / "clips" / "broken.wav").write_bytes(b"not audio at all" * 10)
    records = read(synthetic_corpus)[:4] + [{"audio_path": "clips/broken.wav", "dataset": "x"},
                                            {"transcription": "no audio path"}]
    manifest = base / "with_errors.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "measured.jsonl"
    assert main(["extract", "--input", str(manifest), "--output", str(out), "--workers", "1"]) == 2
    errors = read(out.with_suffix(".errors.jsonl"))
    assert len(errors) == 2 and "could not be read" in errors[0]["error"]
    assert "no audio_path" in errors[1]["error"]
    assert len(read(out)) == 4
    first = out.read_text()
    assert main(["extract", "--input", str(manifest), "--output", str(out), "--workers", "1"]) == 2
    assert out.read_text() == first  # the four finished clips were not measured again


@pytest.mark.parametrize("text,n", [("I really did not expect that", 8), ("hello world", 3),
                                    ("Emotion!", 3), ("flibbertigibbetzz", None), ("", None),
                                    ("in 1999", None)])
def test_syllables_from_the_pronouncing_dictionary(text, n):
    assert count_syllables(text) == n


def test_a_tagger_plug_in_fills_its_fields(synthetic_corpus, tmp_path):
    out = tmp_path / "tagged.jsonl"
    records = read(synthetic_corpus)[:2]
    manifest = synthetic_corpus.parent / "two.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["extract", "--input", str(manifest), "--output", str(out), "--workers", "1",
                 "--tagger", "tests.taggers_example:LoudWordTagger"]) == 0
    tagged = read(out)
    assert all(r["stressed_words"] == r["transcription"].split()[:1] for r in tagged)
    assert all(r["age_level"] == "Young Adult" for r in tagged)
