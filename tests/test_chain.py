"""The README's training chain, end to end, as a user runs it (each step its own process, the
shipped recipes with a few overrides), on the tiny model: corpus -> label -> SFT (QLoRA, LoRA,
full) -> GRPO-PTR from each SFT result -> evaluation -> the app's loader reasons with the result.
Relative paths as the README writes them: the clips' manifest in one folder, the labelled data
written to another (once, every clip was "file not found" in SFT)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*args, cwd):
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return done


def recipe(cwd: Path, shipped: str, name: str, **over) -> str:
    """The shipped recipe with `over` on top, written beside the run (JSON is YAML)."""
    import yaml

    config = yaml.safe_load((ROOT / "train" / "recipes" / shipped).read_text()) | over
    path = cwd / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path.name


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_checkpoint):
    """Every step of the chain in one working folder; returns (folder, {mode: GRPO final})."""
    cwd = tmp_path_factory.mktemp("chain")
    run("train.corpus", "clips", "--n", "12", "--seed", "3", cwd=cwd)
    run("train.label", "all", "--input", "clips/manifest.jsonl", "--output", "data/labelled.jsonl",
        "--workers", "2", "--min-group", "4", cwd=cwd)
    finals = {}
    for mode in ("qlora", "lora", "full"):
        sft = recipe(cwd, "sft_prosody.yaml", f"sft_{mode}", model=str(tiny_checkpoint), mode=mode,
                     output_dir=f"runs/sft_{mode}", n_samples=4, grad_accum=1, max_length=4096,
                     gradient_checkpointing=False, learning_rate=1e-3, logging_steps=1)
        run("train.sft", "--config", sft, "--max-steps", "2", cwd=cwd)
        start = cwd / f"runs/sft_{mode}/final"
        grpo = recipe(cwd, "grpo_ptr.yaml", f"grpo_{mode}", model=str(start), mode=mode,
                      output_dir=f"runs/grpo_{mode}", num_generations=2, prompts_per_step=1,
                      max_new_tokens=8, gate_window=2, learning_rate=1e-3)
        run("train.grpo_ptr", "--config", grpo, "--max-steps", "2", cwd=cwd)
        finals[mode] = cwd / f"runs/grpo_{mode}/final"
    return cwd, finals


@pytest.mark.parametrize("mode", ["qlora", "lora", "full"])
def test_the_readme_chain_runs_and_its_result_reasons_in_the_app(chain, mode, tiny_checkpoint):
    from engine.audio import load_audio
    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Answer, Reasoner

    cwd, finals = chain
    final = finals[mode]
    metrics = [json.loads(line) for line in (final.parent / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    if mode == "full":  # a full SFT result: GRPO trains every chosen weight
        assert (final / "config.json").exists()
    else:  # the SFT adapter trained on, on the original base
        config = json.loads((final / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_checkpoint)
    run("train.evaluate", "--model", str(final), "--data", "data/labelled.jsonl", "--out",
        f"eval_{mode}", "--limit", "2", "--max-new-tokens", "8", "--quant", "fp32", cwd=cwd)
    report = json.loads((cwd / f"eval_{mode}" / "report.json").read_text())
    assert report["n"] == 2 and report["model"] == str(final)
    loaded = load_model(str(final), quant="fp32")
    clip = load_audio(next((cwd / "clips").rglob("*.wav")))
    answer = next(e for e in Reasoner(loaded).stream(clip, max_new_tokens=8)
                  if isinstance(e, Answer))
    assert len(answer.scores) == 9 and abs(sum(answer.scores.values()) - 1) < 1e-5
