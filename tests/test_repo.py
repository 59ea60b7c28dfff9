"""The repository's promises: the README's two commands, CI running the test one, pinned deps."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def command_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(marker, 1)[1]
    return re.search(r"```bash\n(.+?)\n```", block, re.S).group(1)


def test_readme_has_exactly_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- run-command -->") == 1 and text.count("<!-- test-command -->") == 1
    run, test = command_after("<!-- run-command -->"), command_after("<!-- test-command -->")
    assert "\n" not in run and "\n" not in test
    assert run.endswith("python app.py") and "pip install -r requirements.txt" in run
    assert "pytest" in test and "requirements-dev.txt" in test
    assert "apt-get install -y" in run and "espeak-ng" in test


def test_ci_runs_the_readme_test_command():
    script = ROOT / ".ci" / "run"
    extracted = subprocess.run(
        ["awk", '/<!-- test-command -->/ {found = 1; next} found && !/^```/ && NF {print; exit}',
         str(ROOT / "README.md")], capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == command_after("<!-- test-command -->")
    assert "README.md" in script.read_text()


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+]*", line), line
    pins = (ROOT / "requirements.txt").read_text()
    assert "torch==2.13.0" in pins and "transformers==5." in pins and "gradio==6." in pins


def python_block(containing: str) -> str:
    """The README's ```python block that contains `containing`."""
    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if containing in b)


def test_the_readme_client_example_runs(server, tmp_path, espeak_sentence):
    import zipfile

    import soundfile as sf

    sf.write(tmp_path / "clip.wav", *espeak_sentence)
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as zf:
        zf.write(tmp_path / "clip.wav", "anna_angry.wav")
    code = python_block("gradio_client").replace("http://127.0.0.1:7860/", server[0])
    for name in ("clip.wav", "target.wav", "attempt.wav"):
        code = code.replace(f'"{name}"', repr(str(tmp_path / "clip.wav")))
    code = code.replace('"class.zip"', repr(str(tmp_path / "class.zip"))).replace("1024", "8")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert "Pitch:" in scope["summary"] and scope["measurements"]["pitch"]["median_hz"] > 50
    assert len(scope["confidences"]["confidences"]) == 9
    assert scope["scores"]["overall"] >= 95  # the clip imitates itself
    assert scope["table"]["data"][0][:2] == ["class.zip/anna_angry.wav", "angry"]


def test_the_readme_python_example_runs(tiny_checkpoint, tmp_path, espeak_sentence, capsys):
    import soundfile as sf

    code = python_block("from engine.audio import load_audio")
    x, sr = espeak_sentence
    sf.write(tmp_path / "clip.wav", x, sr)
    code = code.replace('"clip.wav"', repr(str(tmp_path / "clip.wav")))
    code = code.replace("load_model()", f"load_model({str(tiny_checkpoint)!r})")
    code = code.replace("max_new_tokens=1024", "max_new_tokens=12")
    exec(compile(code, "README.md", "exec"), {})
    assert "neutral" in capsys.readouterr().out  # the scores dict was printed


def test_the_code_is_lint_clean():
    """ruff, configured in pyproject.toml; the test command runs it, so CI does."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_app_means_the_package_not_app_py():
    done = subprocess.run([sys.executable, "-c", "import app, app.main; print(app.__file__)"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "app" / "__init__.py"


@pytest.mark.slow
def test_pip_install_gives_the_packages_and_console_scripts(tmp_path):
    """`pip install .` from a wheel built here: engine, app and train with the recipes, not
    app.py, and four console scripts that answer."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: setuptools builds in the source tree
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md", "LICENSE", "app.py"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("app", "engine", "train"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "app.py" not in names and "app/main.py" in names and "engine/reasoning/reasoner.py" in names
    assert "train/recipes/grpo_ptr.yaml" in names and not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("emotionthinker =", "emotionthinker-engine =", "emotionthinker-tiny =",
                   "emotionthinker-serve ="):
        assert script in scripts
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, timeout=300, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    for script, words in (("emotionthinker", "--max-seconds"), ("emotionthinker-engine", "analyze"),
                          ("emotionthinker-tiny", "--full-size"), ("emotionthinker-serve", "--api-key")):
        done = subprocess.run([str(target / "bin" / script), "--help"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and words in done.stdout, (script, done.stderr)


def test_the_console_scripts_of_the_test_install_work(tmp_path, espeak_sentence):
    """The README's test command installs the project (`pip install -e .`): its scripts run."""
    import soundfile as sf

    script = Path(sys.prefix) / "bin" / "emotionthinker-engine"
    assert script.exists(), "install the project first: pip install -e ."
    sf.write(tmp_path / "clip.wav", *espeak_sentence)
    done = subprocess.run([str(script), "analyze", str(tmp_path / "clip.wav"), "--json", "--no-contours"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pitch"]["median_hz"] > 50


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_each_benchmark_starts(script):
    """`python bench/NAME.py --help` runs as the README says, with no sys.path edits (a script
    named like a package of ours would shadow it: bench/engine.py once did)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage" in done.stdout, done.stderr


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    """bench/gpu_check.sh --tiny: the one-call GPU script, every step, on the tiny model."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    cases = report["cases"]
    assert {(c["quant"], c["mode"], c["concurrency"]) for c in cases} == {
        (q, m, n) for q in ("fp32", "nf4", "int4") for m in ("generate", "eager", "compiled") for n in (1, 4)}
    assert all(c["batch"] == 4 for c in cases if c["concurrency"] == 4 and c["mode"] != "generate")
    # in fp32 the engine's loop, eager or compiled, alone or batched, writes generate's tokens; in
    # 16 bits (nf4 computes in bf16 on CPUs with native bf16) compiled kernels round differently
    assert all(c["tokens_match_eager"] for c in cases if c["quant"] == "fp32")
    assert all(c["tokens_match_eager"] is not None for c in cases if c["mode"] != "generate")
    assert {c["decoder"] for c in cases if c["mode"] == "compiled"} == {"compiled"}
    assert "= generate" in done.stdout and "written:" in done.stdout


@pytest.mark.slow
def test_the_bad_input_harness_finds_no_defect():
    """bench/robustness.py: every kind of broken or odd audio through the CLI and over HTTP."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "robustness.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0 and summary.endswith(" 0 defects"), done.stdout[-3000:]
    assert int(summary.split()[0]) >= 60  # the matrix, through both doors


def test_the_real_speech_bench_reads_a_manifest_and_prints_the_errors(tmp_path):
    """bench/realspeech.py on a folder laid out like ../shared/realspeech-dev, with espeak-ng
    speech (real recordings stay out of the repository): the truth is the text's syllables."""
    import json

    import soundfile as sf

    from engine.prosody import synth

    rows = ["path\tcorpus\temotion\tgender\tspeaker\ttext\tsyllables"]
    for i, (text, voice, gender, syllables) in enumerate([
            ("Kids are talking by the door.", "en-us", "male", 6),  # a wrong manifest count: 7
            ("Nobody knows what happened to the little boat yesterday.", "en-us+f3", "female", 15)]):
        x, sr = synth.espeak(text, voice=voice, pitch=30 if gender == "male" else 70)
        (tmp_path / "clips").mkdir(exist_ok=True)
        sf.write(tmp_path / "clips" / f"{i}.wav", x, sr)
        rows.append(f"clips/{i}.wav\tespeak\tneutral\t{gender}\ts{i}\t{text}\t{syllables}")
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "realspeech.py"), str(tmp_path),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    first, second = result["clips"]
    assert (first["truth"], first["manifest_syllables"], second["truth"]) == (7, 6, 15)
    assert " 6!" in done.stdout  # the disagreeing manifest count is flagged
    for clip in result["clips"]:
        assert clip["error"] == pytest.approx(abs(clip["counted"] - clip["truth"]) / clip["truth"])
        assert clip["hnr_db"] > 0 and clip["praat_hnr_db"] > 0  # accuracy: tests/test_prosody.py
    assert result["summary"]["all"]["mae"] == pytest.approx((first["error"] + second["error"]) / 2)
    assert "mean absolute error" in done.stdout and "voice type 'auto'" in done.stdout


@pytest.mark.slow
def test_the_training_step_bench_times_both_trainers(tmp_path):
    """bench/train_step.py on the tiny model: SFT and GRPO-PTR steps, generation apart from update."""
    import json

    out = tmp_path / "steps.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "train_step.py"), "--seconds", "3",
                           "--steps", "1", "--k", "2", "--max-new-tokens", "4", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sft, grpo = json.loads(out.read_text())["rows"]
    assert sft["trainer"] == "sft" and sft["tokens"] > 75 and sft["step_s"] > 0  # 3 s of audio: 75 tokens
    assert grpo["k"] == 2 and 2 <= grpo["generated_tokens"] <= 8
    assert grpo["step_s"] == pytest.approx(grpo["generation_s"] + grpo["update_s"], abs=2e-3)
    assert "SFT:" in done.stdout and "GRPO-PTR (K=2)" in done.stdout
