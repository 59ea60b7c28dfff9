"""engine.batch: a class's clips (files and zips) -> rows, failures and a CSV, on real files made here."""

import csv
import io
import json
import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import batch
from engine.audio import from_array, write_wav
from engine.batch import COLUMNS, NUMERIC, BatchError, Item, Limits, analyse, collect, tag, to_csv
from engine.prosody import synth
from tests.conftest import NO_REALSPEECH
from tests.conftest import REALSPEECH as REAL

MIB = 1024 * 1024


def tone(path: Path, f0_hz: float, seconds: float = 1.0) -> Path:
    """A harmonic tone with 4 syllable-like swells per second: its F0 and syllable count are known."""
    write_wav(path, from_array(synth.harmonic(f0_hz, seconds, syllable_hz=4.0), 16000))
    return path


def wav_bytes(f0_hz: float, seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, synth.harmonic(f0_hz, seconds, syllable_hz=4.0), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three tones, one espeak-ng sentence (if installed), a corrupt and an empty file: analysed once."""
    folder = tmp_path_factory.mktemp("class")
    paths = [tone(folder / "anna_angry_01.wav", 120.0), tone(folder / "ben_sad.wav", 200.0),
             tone(folder / "cleo.wav", 250.0)]
    (folder / "broken.wav").write_bytes(np.random.default_rng(0).bytes(20_000))
    (folder / "empty.wav").write_bytes(b"")
    paths += [folder / "broken.wav", folder / "empty.wav"]
    if synth.espeak_available():
        x, sr = synth.espeak("The lesson starts at nine and ends at ten.")
        write_wav(folder / "dana_happy.wav", from_array(x, sr))
        paths.append(folder / "dana_happy.wav")
    items, failed = collect(paths, folder / "work")
    calls = []
    rows, bad = analyse(items, progress=lambda done, total, name: calls.append((done, total, name)))
    return paths, items, failed, rows, bad, calls


def test_good_files_become_rows_and_bad_ones_failures_with_reasons(mixed):
    paths, items, failed, rows, bad, calls = mixed
    assert failed == [] and [i.name for i in items] == [p.name for p in paths]
    by_name = {r["file"]: r for r in rows}
    assert set(by_name) == {p.name for p in paths} - {"broken.wav", "empty.wav"}
    for name, f0, voice in [("anna_angry_01.wav", 120.0, "male"), ("ben_sad.wav", 200.0, "female"),
                            ("cleo.wav", 250.0, None)]:
        r = by_name[name]
        assert r["pitch_median_hz"] == pytest.approx(f0, rel=0.01)
        assert r["duration_s"] == pytest.approx(1.0, abs=0.01)
        assert r["syllable_count"] == 4 and r["speech_found"] is True
        assert r["voice_type"] == voice  # 250 Hz fits a woman or a child: no voice assumed
        assert r["emotion"] is None and list(r) == list(COLUMNS)
    assert by_name["anna_angry_01.wav"]["tag"] == "angry" and by_name["cleo.wav"]["tag"] is None
    if "dana_happy.wav" in by_name:  # real synthetic speech: a voice, syllables, a tag
        r = by_name["dana_happy.wav"]
        assert r["tag"] == "happy" and r["speech_found"] and 6 <= r["syllable_count"] <= 16
        assert 60 < r["pitch_median_hz"] < 200
    reasons = {f.name: f.reason for f in bad}
    assert set(reasons) == {"broken.wav", "empty.wav"}
    assert "could not be read as audio" in reasons["broken.wav"] and "accepted: WAV" in reasons["broken.wav"]
    assert reasons["empty.wav"] == "empty.wav is empty (0 bytes)"
    assert not any("Traceback" in r or "File \"" in r for r in reasons.values())
    assert [c[:2] for c in calls] == [(k, len(items)) for k in range(1, len(items) + 1)]
    assert [c[2] for c in calls] == [i.name for i in items]
    json.dumps(rows, allow_nan=False)  # JSON-safe


def test_an_unknown_voice_type_is_refused_before_any_work(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="voice type"):
        analyse([Item("a.wav", tone(tmp_path / "a.wav", 200))], voice="robot",
                progress=lambda *a: calls.append(a))
    assert calls == []


def test_a_zip_is_unpacked_inside_workdir_only(tmp_path):
    upload = tmp_path / "up"
    upload.mkdir()
    archive = upload / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("class/anna_angry.wav", wav_bytes(200))
        z.writestr("class/group 2/ben_sad.wav", wav_bytes(130))
        z.writestr("class/Ана_happy.wav", wav_bytes(240))  # a name that is not ASCII
        z.writestr("class/", b"")  # a folder entry
        for evil in ("../evil.wav", "/abs.wav", "..\\win.wav", "C:/drive.wav", "class/../../up.wav"):
            z.writestr(evil, wav_bytes(300))
        z.writestr("__MACOSX/class/._anna_angry.wav", b"\x00\x05\x16\x07junk")
        z.writestr("class/.DS_Store", b"junk")
        z.writestr("class/notes.txt", b"what we recorded")
        z.writestr("class/inner.zip", b"PK")
        link = zipfile.ZipInfo("class/link.wav")
        link.external_attr = 0o120777 << 16  # a symbolic link to outside
        z.writestr(link, "../../../etc/passwd")
    names = {i.filename for i in zipfile.ZipFile(archive).infolist()}
    assert {"../evil.wav", "/abs.wav", "..\\win.wav"} <= names  # the traversal really is in the zip
    before = set(files_under(tmp_path))
    work = tmp_path / "work"
    work.mkdir()

    items, failed = collect([archive], work)

    assert [i.name for i in items] == ["class.zip/class/anna_angry.wav", "class.zip/class/group 2/ben_sad.wav",
                                       "class.zip/class/Ана_happy.wav"]
    written = files_under(work)
    assert set(files_under(tmp_path)) - before == set(written)  # nothing outside workdir
    assert not Path("/abs.wav").exists() and not (tmp_path.parent / "evil.wav").exists()
    assert len(written) == 3 and all(not p.is_symlink() and p.parent.parent == work for p in written)
    assert {i.path for i in items} == set(written)
    reasons = {f.name: f.reason for f in failed}
    refused = [n for n, r in reasons.items() if "path leaves the archive" in r]
    assert len(refused) == 5  # refused, not flattened
    assert "not an audio file" in reasons["class.zip/class/notes.txt"]
    assert "symbolic link" in reasons["class.zip/class/link.wav"]
    assert "zip inside the zip" in reasons["class.zip/class/inner.zip"]
    assert not any("MACOSX" in n or "DS_Store" in n for n in reasons)  # skipped silently
    assert len(failed) == 8

    rows, bad = analyse(items)
    assert bad == [] and [r["tag"] for r in rows] == ["angry", "sad", "happy"]
    assert [r["pitch_median_hz"] for r in rows] == [pytest.approx(f, rel=0.01) for f in (200, 130, 240)]


def test_a_corrupt_zip_is_a_failure_and_the_rest_go_on(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + bytes(500))
    good = tone(tmp_path / "ok.wav", 200)
    items, failed = collect([tmp_path / "bad.zip", good], tmp_path / "work")
    assert [i.name for i in items] == ["ok.wav"]
    assert failed[0].name == "bad.zip" and "not a readable zip archive" in failed[0].reason


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """200 MiB of zeros deflated (~200 KB on disk), streamed in 1 MiB chunks, beside a real clip."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("good.wav", wav_bytes(200))
        with z.open("bomb.wav", "w") as f:
            for _ in range(200):
                f.write(bytes(MIB))
    return path


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(bomb, tmp_path):
    assert bomb.stat().st_size < 1 * MIB
    items, failed = collect([bomb], tmp_path)
    assert items == []
    [f] = failed
    assert f.name == "bomb.zip" and "zip bomb" in f.reason and "bomb.zip/bomb.wav" in f.reason
    assert "at most 50 times" in f.reason  # the bound, named
    assert files_under(tmp_path) == []  # not even a folder was made


def patch_directory(archive: Path, entry: str, offset: int, value: int, fmt: str = "<I",
                    out: str = "liar.zip") -> Path:
    """A copy of `archive` with `value` written at `offset` of `entry`'s central directory record
    (8: flags, 10: compression method, 24: uncompressed size)."""
    data = bytearray(archive.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n] == entry.encode():
            struct.pack_into(fmt, data, at + offset, value)
        at = data.find(b"PK\x01\x02", at + 4)
    path = archive.with_name(out)
    path.write_bytes(bytes(data))
    return path


def test_declared_sizes_that_lie_are_bounded_by_the_bytes_read(bomb, tmp_path):
    liar = patch_directory(bomb, "bomb.wav", 24, 1 * MIB)  # ratio now looks ~5: passes every declared check
    info = zipfile.ZipFile(liar).getinfo("bomb.wav")
    assert info.file_size == MIB and info.file_size / info.compress_size < batch.MAX_RATIO
    items, failed = collect([liar], tmp_path)
    assert [i.name for i in items] == ["liar.zip/good.wav"]
    assert [f.name for f in failed] == ["liar.zip/bomb.wav"] and "damaged" in failed[0].reason
    assert sum(p.stat().st_size for p in files_under(tmp_path)) < 100_000  # the good clip only

    class Endless(io.RawIOBase):  # a stream that never ends, whatever its header said
        def readinto(self, b):
            b[:] = bytes(len(b))
            return len(b)

    sink = io.BytesIO()
    with pytest.raises(batch._Refused, match="more than its declared size"):
        batch.bounded_copy(Endless(), sink, 3 * MIB + 5, "x.zip/a.wav")
    assert sink.tell() <= 3 * MIB + 5
    assert batch.bounded_copy(io.BytesIO(b"abc"), io.BytesIO(), 3) == 3  # exactly the limit is fine


def test_password_protected_and_unreadable_entries_are_listed(tmp_path):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("locked.wav", "deflate64.wav", "fine.wav"):
            z.writestr(name, wav_bytes(200))
    odd = patch_directory(plain, "locked.wav", 8, 0x1, "<H", "odd.zip")  # the encrypted flag
    odd = patch_directory(odd, "deflate64.wav", 10, 9, "<H", "odd.zip")  # a method zipfile lacks
    items, failed = collect([odd], tmp_path / "work")
    assert [i.name for i in items] == ["odd.zip/fine.wav"]
    reasons = {f.name: f.reason for f in failed}
    assert "password-protected" in reasons["odd.zip/locked.wav"]
    assert "ordinary compression" in reasons["odd.zip/deflate64.wav"]
    assert len(files_under(tmp_path / "work")) == 1


def test_too_many_entries_and_too_much_to_unpack_are_refused(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for k in range(12):
            z.writestr(f"c{k}.wav", b"RIFF")
    items, failed = collect([many], tmp_path / "w1", Limits(max_entries=10))
    assert items == [] and "declares 12 entries" in failed[0].reason and "at most 10" in failed[0].reason

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.wav", wav_bytes(200, 2.0))
        z.writestr("b.wav", wav_bytes(200, 2.0))  # 64 KB each
    items, failed = collect([big], tmp_path / "w2", Limits(max_unzipped_bytes=100_000))
    assert items == [] and "a batch may unpack" in failed[0].reason and "--batch-max-mb" in failed[0].reason
    assert not (tmp_path / "w2").exists() or files_under(tmp_path / "w2") == []


def test_clips_over_the_limit_are_listed_and_not_unpacked(tmp_path):
    plain = [tone(tmp_path / f"p{k}.wav", 200) for k in range(2)]
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for k in range(4):
            z.writestr(f"z{k}.wav", wav_bytes(200))
    items, failed = collect([*plain, archive], tmp_path / "work", Limits(max_clips=3))
    assert [i.name for i in items] == ["p0.wav", "p1.wav", "more.zip/z0.wav"]
    assert [f.name for f in failed] == ["more.zip/z1.wav", "more.zip/z2.wav", "more.zip/z3.wav"]
    assert all("at most 3 clips" in f.reason and "--batch-max-clips" in f.reason for f in failed)
    assert len(files_under(tmp_path / "work")) == 1


def test_an_upload_over_the_byte_limit_is_refused_before_any_work(tmp_path):
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.wav", wav_bytes(200))
    clip = tone(tmp_path / "b.wav", 200)
    total = archive.stat().st_size + clip.stat().st_size
    with pytest.raises(BatchError, match="--batch-max-mb") as err:
        collect([archive, clip], tmp_path / "work", Limits(max_bytes=total - 1))
    assert isinstance(err.value, ValueError) and "at most" in str(err.value)
    assert not (tmp_path / "work").exists()  # nothing was unpacked
    items, _ = collect([archive, clip], tmp_path / "work", Limits(max_bytes=total))
    assert len(items) == 2


def test_duplicate_names_get_a_suffix(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    paths = [tone(a / "clip.wav", 200), tone(b / "clip.wav", 200), tone(tmp_path / "clip.wav", 200)]
    items, _ = collect(paths, tmp_path / "work")
    assert [i.name for i in items] == ["clip.wav", "clip (2).wav", "clip (3).wav"]
    assert [i.path for i in items] == paths


@pytest.mark.parametrize("name, label", [
    ("anna_angry_01.wav", "angry"), ("03-01-05-01-02-01-12.wav", "angry"),
    ("ravdess 03-01-02-01-01-01-05.wav", "neutral"), ("03-01-01-01-01-01-05.wav", "neutral"),
    ("03-01-06-02-01-01-10.wav", "fear"), ("03-01-07-02-01-01-10.wav", "contempt"),
    ("03-01-08-02-01-01-10.wav", "surprise"), ("x.wav", None), ("Tom-SURPRISED.mp3", "surprise"),
    ("kim surprise 2.wav", "surprise"), ("1001_DFA_ANG_XX.wav", "angry"), ("Ses01F_sur_3.wav", "surprise"),
    ("disgust.wav", "contempt"), ("lee.fearful.ogg", "fear"), ("whisper2.wav", "whisper"),
    ("class.zip/happy/01.wav", "happy"), ("sad_class.zip/01.wav", None), ("angrybird.wav", None),
    ("sadie.wav", None), ("2023-01-05-recording.wav", None), ("03-01-09-01-01-01-05.wav", None),
])
def test_tag_reads_the_emotion_a_file_name_states(name, label):
    assert tag(name) == label


def test_csv_reads_back_to_the_same_values(mixed, tmp_path):
    rows = mixed[3]
    path = to_csv(rows, tmp_path / "class.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        back = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS and len(back) == len(rows)
    for r, b in zip(rows, back):
        for c in COLUMNS:
            if r[c] is None:
                assert b[c] == ""
            elif isinstance(r[c], bool):
                assert b[c] == str(int(r[c]))
            elif c in NUMERIC:
                assert float(b[c]) == r[c]
            else:
                assert b[c] == r[c]
    assert set(NUMERIC) < set(COLUMNS)
    assert all(isinstance(r[c], (int, float)) for r in rows for c in NUMERIC if r[c] is not None)
    formula = dict(rows[0], file="=HYPERLINK(1).wav")  # a student's file name, opened in Excel
    with open(to_csv([formula], tmp_path / "f.csv"), newline="", encoding="utf-8") as f:
        assert next(csv.DictReader(f))["file"] == "'=HYPERLINK(1).wav"


def test_twenty_one_second_clips_time_per_clip(tmp_path, capsys):
    """Ten tones of known F0 and, with espeak-ng, ten 1-s slices of a spoken sentence."""
    f0s = np.geomspace(110, 240, 20)
    paths = [tone(tmp_path / f"s{k:02d}.wav", f0) for k, f0 in enumerate(f0s[:10])]
    if synth.espeak_available():
        x, sr = synth.espeak("Every student in the class read the same short sentence aloud twice.")
        for k in range(10):
            write_wav(tmp_path / f"e{k:02d}.wav", from_array(x[int(0.15 * k * sr):][:sr], sr))
            paths.append(tmp_path / f"e{k:02d}.wav")
    else:
        paths += [tone(tmp_path / f"s{k:02d}.wav", f0) for k, f0 in enumerate(f0s[10:], 10)]
    items, _ = collect(paths, tmp_path / "work")
    start = time.perf_counter()
    rows, failed = analyse(items)
    per_clip = (time.perf_counter() - start) / len(items)
    with capsys.disabled():
        print(f"\nbatch: {per_clip * 1000:.1f} ms per 1-s clip (20 clips, load + analyse)")
    assert failed == [] and len(rows) == 20 and all(r["duration_s"] == 1.0 for r in rows)
    assert [r["pitch_median_hz"] for r in rows[:10]] == [pytest.approx(f, rel=0.01) for f in f0s[:10]]
    assert sum(r["speech_found"] for r in rows[10:]) >= 8  # espeak's slices are speech
    assert per_clip < 5.0  # a shared machine: only a gross slowdown fails


EMOTION_LABEL = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                 "fear": "fear", "disgust": "contempt", "surprise": "surprise", "-": None}


@pytest.mark.skipif(not (REAL / "MANIFEST.tsv").exists(), reason=NO_REALSPEECH)
def test_a_zip_of_real_recordings(tmp_path, capsys):
    import parselmouth

    from engine.audio import load_audio
    from engine.batch import row
    from engine.prosody import analyze

    with open(REAL / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        manifest = {r["path"]: r for r in csv.DictReader(f, delimiter="\t")}
    chosen = ["ravdess/03-01-02-01-01-01-05.wav", "ravdess/03-01-05-01-02-01-10.wav",
              "ravdess/03-01-06-02-01-01-05.wav", "ravdess/03-01-07-02-01-01-10.wav",
              "read_speech/cmu_arctic_us_axb_a0004.wav"]
    archive = tmp_path / "real.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for p in chosen:
            z.write(REAL / p, p)
    items, failed = collect([archive], tmp_path / "work")
    assert failed == [] and [i.name for i in items] == [f"real.zip/{p}" for p in chosen]
    start = time.perf_counter()
    rows, bad = analyse(items)
    with capsys.disabled():
        print(f"\nbatch: {(time.perf_counter() - start) / 5 * 1000:.1f} ms per real clip (3-4 s, 48 kHz)")
    assert bad == [] and len(rows) == 5
    for p, r in zip(chosen, rows):
        truth = manifest[p]
        assert r["tag"] == EMOTION_LABEL[truth["emotion"]]
        assert r["duration_s"] == pytest.approx(float(truth["duration_s"]), abs=0.01)
        assert r["speech_found"] and abs(r["syllable_count"] - int(truth["syllables"])) <= 4
        # the zip changed nothing: the same row as the original file's, near Praat's own median F0
        assert r == row(r["file"], analyze(load_audio(REAL / p)))
        pitch = parselmouth.Sound(str(REAL / p)).to_pitch_ac(pitch_floor=75, pitch_ceiling=600)
        f0 = pitch.selected_array["frequency"]
        assert r["pitch_median_hz"] == pytest.approx(float(np.median(f0[f0 > 0])), rel=0.1)
    assert rows[2]["pitch_median_hz"] > 250  # the male actor's fear: raised high, not a male range
    to_csv(rows, tmp_path / "real.csv")
    assert os.path.getsize(tmp_path / "real.csv") > 0
