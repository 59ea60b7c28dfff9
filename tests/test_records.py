"""Training records (train.records): one reader, one writer, one clip loader, one path rule."""

import json

import numpy as np
import pytest
import soundfile as sf

from engine.audio import AudioError
from engine.prosody import synth
from train.records import MAX_CLIP_SECONDS, JsonlWriter, audio_file, load_clip, read_jsonl, rebase


def test_writer_and_reader_round_trip_and_append(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    with JsonlWriter(path) as f:
        f.write_all([{"audio_path": "a.wav", "emotion": "sad"}, {"audio_path": "b.wav"}])
    with JsonlWriter(path, append=True) as f:
        f.write({"audio_path": "c.wav", "note": "ünïcode"})
    assert [r["audio_path"] for r in read_jsonl(path)] == ["a.wav", "b.wav", "c.wav"]
    assert list(read_jsonl(path))[2]["note"] == "ünïcode"


def test_a_bad_line_is_named(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"audio_path": "a.wav"}\n\n{"audio_path": \n')
    with pytest.raises(ValueError, match=r"r.jsonl, line 3: not JSON"):
        list(read_jsonl(path))


def test_paths_resolve_from_the_files_folder_and_rebase_keeps_them_pointing_at_the_audio(tmp_path):
    (tmp_path / "corpus" / "clips").mkdir(parents=True)
    (tmp_path / "data" / "labelled").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "clips" / "a.wav", synth.harmonic(150, 1.0), 16000)
    record = {"audio_path": "clips/a.wav", "emotion": "sad"}
    assert audio_file(record, tmp_path / "corpus") == tmp_path / "corpus" / "clips" / "a.wav"
    moved = rebase(record, tmp_path / "corpus", tmp_path / "data" / "labelled")
    assert moved["audio_path"] == "../../corpus/clips/a.wav" and record["audio_path"] == "clips/a.wav"
    clip = load_clip(moved, tmp_path / "data" / "labelled")
    assert clip.duration_s == pytest.approx(1.0, abs=0.01)
    absolute = {"audio_path": str(tmp_path / "corpus" / "clips" / "a.wav")}
    assert rebase(absolute, tmp_path, tmp_path / "x") == absolute
    with pytest.raises(ValueError, match="no audio_path"):
        load_clip({"emotion": "sad"}, tmp_path)


def test_one_documented_length_limit(tmp_path):
    sf.write(tmp_path / "long.wav", np.zeros(int(16000 * (MAX_CLIP_SECONDS + 1)), np.int16), 16000)
    with pytest.raises(AudioError, match=f"the limit is {MAX_CLIP_SECONDS:g} s"):
        load_clip({"audio_path": "long.wav"}, tmp_path)


def test_label_output_elsewhere_feeds_the_next_step(tmp_path, synthetic_corpus):
    """`train.label all --output` into another folder: every clip still loads from the output
    (once the README's chain failed here: every clip 'file not found' in SFT)."""
    from train.label import extract, main

    first = [next(read_jsonl(synthetic_corpus))]
    clips = tmp_path / "in.jsonl"
    clips.write_text(json.dumps(rebase(first[0], synthetic_corpus.parent, tmp_path)) + "\n")
    out = tmp_path / "data" / "deeper" / "labelled.jsonl"
    out.parent.mkdir(parents=True)
    assert main(["all", "--input", str(clips), "--output", str(out), "--workers", "1"]) == 0
    labelled = list(read_jsonl(out))
    assert len(labelled) == 1 and labelled[0]["pitch_level"] is not None
    assert load_clip(labelled[0], out.parent).duration_s > 1.0
    # a rerun recognises the clip under its rebased path: nothing is measured twice
    measured = out.with_suffix(".measured.jsonl")
    assert extract(clips, measured)["skipped"] == 1 and len(list(read_jsonl(measured))) == 1


def test_a_records_gender_names_the_voice_type_for_pitch_levels():
    from train.records import voice_type

    assert [voice_type({"gender": g}) for g in ("Male", "female ", "Child", None, "unknown")] == \
        ["male", "female", "child", "auto", "auto"]
    assert voice_type({}) == "auto"
