"""SFT and GRPO-PTR in two processes on the CPU (torchrun, gloo), as `accelerate launch` runs them
on GPUs: each process learns from different clips, the weights stay identical across them, and
one process writes one result. (`accelerate launch --cpu` starts a single process in accelerate
1.15; torchrun starts the two.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def launch(module: str, config: dict, cwd: Path) -> Path:
    path = cwd / f"{module.split('.')[-1]}.json"
    path.write_text(json.dumps(config))
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", module, "--config", str(path)],
                          cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(config["output_dir"])


def test_grpo_ptr_in_two_processes(tmp_path, tiny_checkpoint, labelled_corpus):
    out = launch("train.grpo_ptr", {
        "model": str(tiny_checkpoint), "data": str(labelled_corpus), "output_dir": str(tmp_path / "g"),
        "mode": "lora", "num_generations": 2, "max_steps": 3, "max_new_tokens": 8,
        "learning_rate": "1e-3", "gate_window": 2, "gate_threshold": 0.0, "gate_stable_steps": 1,
        "save_steps": 2}, tmp_path)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # one log, written by one process
    assert all(r["processes"] == 2 and len(r["clips"]) == 2 for r in rows)
    assert any(a != b for a, b in (r["clips"] for r in rows))  # each process draws its own clips
    assert all(r["weights_in_sync"] for r in rows)
    # the gate counts both processes' completions: its window (2 per process) is full at step 1
    assert rows[0]["gate_opened_at"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "final", "metrics.jsonl"]
    assert (out / "final" / "adapter_model.safetensors").exists()


def test_sft_in_two_processes(tmp_path, tiny_checkpoint, labelled_corpus):
    out = launch("train.sft", {
        "model": str(tiny_checkpoint), "data": str(labelled_corpus), "output_dir": str(tmp_path / "s"),
        "mode": "lora", "max_steps": 2, "grad_accum": 1, "batch_size": 1, "learning_rate": "1e-3",
        "n_samples": 8, "logging_steps": 1, "save_steps": 1000}, tmp_path)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    # 8 samples, one per process per step: two processes take 2 a step, a quarter of the epoch
    assert steps[0]["epoch"] == pytest.approx(0.25)
    from engine.reasoning.model import load_model

    assert load_model(str(out / "final"), quant="fp32").model is not None
