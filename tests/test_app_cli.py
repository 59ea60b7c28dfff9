"""The app's entry points: settings from flags and environment, the desktop microphone tool."""

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import parse

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_safe():
    s = parse([])
    assert s.host == "127.0.0.1" and not s.share and s.port == 7860
    assert s.model == "ddwang2000/EmotionThinker" and s.max_seconds == 120 and not s.no_model


def test_environment_variables_set_the_defaults_and_flags_win(monkeypatch):
    monkeypatch.setenv("ET_MODEL", "/models/et")
    monkeypatch.setenv("ET_PORT", "9000")
    monkeypatch.setenv("ET_SHARE", "1")
    monkeypatch.setenv("ET_MAX_SECONDS", "30")
    s = parse(["--port", "9100"])
    assert s.model == "/models/et" and s.port == 9100 and s.share and s.max_seconds == 30


def test_app_help_lists_every_flag():
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--model", "--quant", "--host", "--port", "--share", "--max-seconds", "--no-model"):
        assert flag in done.stdout


@pytest.mark.skipif(ctypes.util.find_library("portaudio") is not None,
                    reason="PortAudio is installed here: the missing-library path cannot be shown")
def test_mic_without_portaudio_says_so():
    done = subprocess.run([sys.executable, "-m", "app.mic"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "PortAudio" in done.stderr and "libportaudio2" in done.stderr
    assert "Traceback" not in done.stderr


def test_compiling_is_on_unless_turned_off(monkeypatch):
    assert parse([]).compile and not parse(["--no-compile"]).compile
    monkeypatch.setenv("ET_NO_COMPILE", "1")
    assert not parse([]).compile


@pytest.mark.parametrize("args,env,named", [
    (["--max-seconds", "nan"], {}, "--max-seconds"),  # once: a crash at start
    ([], {"ET_MAX_SECONDS": "abc"}, "ET_MAX_SECONDS"),  # once: a traceback, even for --help
    (["--port", "0"], {}, "--port"),
    ([], {"ET_QUEUE_SIZE": "-1"}, "ET_QUEUE_SIZE"),
    (["--max-batch", "9"], {}, "--max-batch"),
])
def test_bad_settings_stop_the_start_with_the_setting_named(monkeypatch, capsys, args, env, named):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as err:
        parse(args)
    assert err.value.code == 2 and named in capsys.readouterr().err


def test_help_answers_whatever_the_environment_holds(monkeypatch):
    monkeypatch.setenv("ET_MAX_SECONDS", "abc")
    with pytest.raises(SystemExit) as err:
        parse(["--help"])
    assert err.value.code == 0


def test_uploads_are_kept_an_hour_by_default(monkeypatch):
    assert parse([]).keep_files_s == 3600
    monkeypatch.setenv("ET_KEEP_FILES_S", "600")
    assert parse([]).keep_files_s == 600
