"""Loading the thinker through the users' path, on tiny random-weight checkpoints."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from engine.reasoning.model import ModelUnavailable, load_model, thinker_shards


def test_full_omni_layout_loads_only_the_thinker(tiny_model, tiny_checkpoint):
    from safetensors import safe_open

    m = tiny_model.model
    assert type(m).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert m.visual is None and not m.training
    assert tiny_model.quant == "fp32" and tiny_model.device == "cpu"
    from engine.reasoning.model import default_quant

    assert default_quant("cpu") == "nf4" and default_quant("cuda:0") == "nf4"  # bitsandbytes here
    # every thinker weight is the checkpoint's (no random init slipped in)
    index = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())
    state = m.state_dict()
    checked = 0
    for key, file in index["weight_map"].items():
        if not key.startswith("thinker.") or ".visual." in key:
            continue
        with safe_open(str(tiny_checkpoint / file), "pt") as f:
            assert torch.equal(state[key.removeprefix("thinker.")], f.get_tensor(key)), key
        checked += 1
    assert checked == len([k for k in state if not k.startswith("visual.")])


def test_thinker_only_layout_loads_the_same_way(tmp_path):
    from engine.reasoning.tiny import build

    path = build(tmp_path / "thinker", thinker_only=True)
    m = load_model(str(path))
    assert m.model.visual is None
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"


def test_shard_selection_reads_the_index():
    index = {"weight_map": {"thinker.model.a": "m-1.safetensors", "thinker.lm_head": "m-2.safetensors",
                            "talker.x": "m-3.safetensors", "token2wav.y": "m-4.safetensors"}}
    assert thinker_shards(index) == ["m-1.safetensors", "m-2.safetensors"]
    assert thinker_shards({"weight_map": {"model.a": "a.st", "lm_head": "b.st"}}) == ["a.st", "b.st"]


@pytest.mark.parametrize("quant,layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_bitsandbytes_quantisation_on_cpu(tiny_checkpoint, quant, layer):
    m = load_model(str(tiny_checkpoint), quant=quant)
    modules = dict(m.model.named_modules())
    assert type(modules["model.layers.0.self_attn.q_proj"]).__name__ == layer
    assert type(modules["lm_head"]).__name__ == "Linear"  # the output layer stays 16/32-bit
    assert type(modules["audio_tower.layers.0.fc1"]).__name__ == "Linear"
    assert not m.audio_encoder_quantized and quant in m.describe()


def test_audio_encoder_quantisation_is_a_flag(tiny_checkpoint):
    m = load_model(str(tiny_checkpoint), quant="nf4", quantize_audio_encoder=True)
    modules = dict(m.model.named_modules())
    assert type(modules["audio_tower.layers.0.fc1"]).__name__ == "Linear4bit"
    assert m.audio_encoder_quantized


def test_torchao_int4_quantises_the_text_layers_and_decodes_like_generate(tiny_checkpoint):
    """quant="int4" (torchao; on a CPU its "opaque" layout): every text-layer projection held in
    4 bits, the output layer and audio encoder not; logits a close approximation of bf16's;
    the engine's loop writes exactly generate's tokens on it."""
    import torch._inductor.config as inductor

    from engine.audio import from_array
    from engine.prosody import synth
    from engine.reasoning.options import GenerationOptions
    from engine.reasoning.reasoner import Reasoner

    bf16 = load_model(str(tiny_checkpoint), quant="bf16")
    settings = (torch.get_float32_matmul_precision(), inductor.coordinate_descent_tuning)
    m = load_model(str(tiny_checkpoint), quant="int4", device="cpu")
    assert (torch.get_float32_matmul_precision(), inductor.coordinate_descent_tuning) == settings  # untouched
    weights = dict(m.model.named_parameters())
    projections = [n for n in weights if n.startswith("model.layers.") and n.endswith("proj.weight")]
    assert projections and all(type(weights[n]).__name__ == "Int4OpaqueTensor" for n in projections)
    assert type(weights["lm_head.weight"]) is torch.nn.Parameter  # the output layer stays 16-bit
    assert type(weights["audio_tower.layers.0.fc1.weight"]) is torch.nn.Parameter
    assert "int4 (audio encoder in 16 bits)" in m.describe() and m.weights_gib < 0.85 * bf16.weights_gib

    reasoner = Reasoner(m, static_cache=True, compile=False)
    clip = from_array(synth.harmonic(170.0, 2.0, syllable_hz=4.0), 16000)
    inputs = reasoner.inputs(clip)
    with torch.no_grad():
        mine, theirs = (x.model(**inputs).logits[0, -1].float() for x in (m, bf16))
    assert torch.cosine_similarity(mine, theirs, dim=0) > 0.98
    options = GenerationOptions(max_new_tokens=24)
    reference = options.generate(m.model, reasoner.tokenizer, inputs)[0, inputs["input_ids"].shape[1]:].tolist()
    done = list(reasoner.stream(clip, options, score=False))[-1]
    assert done.decoder == "static" and list(done.token_ids) == reference


def test_the_cuda_int4_layout_is_torchaos_tile_packed_one():
    """What quant="int4" asks torchao for on CUDA (built here; it runs only on a GPU): int4
    weight-only in groups of 128, tinygemm's tile-packed layout, inductor's settings left alone."""
    from torchao.quantization import Int4WeightOnlyConfig

    from engine.reasoning.model import _int4_config

    config = _int4_config(on_cuda=True, quantize_audio=False, hidden=3584)
    layout = config.quant_type
    assert isinstance(layout, Int4WeightOnlyConfig) and layout.group_size == 128
    assert layout.int4_packing_format == "tile_packed_to_4d" and layout.set_inductor_config is False
    assert set(config.modules_to_not_convert) == {"lm_head", "visual", "audio_tower"}


def test_an_adapter_on_int4_is_refused_with_the_alternatives(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x/y"}))
    with pytest.raises(ModelUnavailable, match="nf4 .* or bf16"):
        load_model(str(tmp_path), quant="int4", device="cpu")


def test_bf16(tiny_checkpoint):
    m = load_model(str(tiny_checkpoint), quant="bf16")
    assert next(m.model.parameters()).dtype == torch.bfloat16


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(ModelUnavailable, match="no checkpoint directory"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="not a loadable"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="quant must be one of"):
        load_model(str(tmp_path / "empty"), quant="fp8")


def test_no_cuda_means_no_automatic_16gb_download():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the download would be legitimate")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="--device cpu"):
        load_model("ddwang2000/EmotionThinker")
    assert time.perf_counter() - start < 1.0


def _load_in_subprocess(env_extra, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **env_extra}
    code = ("from engine.reasoning.model import load_model, ModelUnavailable\n"
            "try:\n    load_model('ddwang2000/EmotionThinker', device='cpu')\n"
            "except ModelUnavailable as e:\n    print('UNAVAILABLE:', e)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    return done, time.perf_counter() - start


def test_offline_and_not_cached_fails_in_seconds_saying_why(tmp_path):
    done, elapsed = _load_in_subprocess({"HF_HUB_OFFLINE": "1"}, tmp_path)
    assert "UNAVAILABLE: HF_HUB_OFFLINE is set" in done.stdout, done.stderr[-2000:]
    assert "local checkpoint directory" in done.stdout
    assert elapsed < 20


def test_unreachable_hub_fails_in_seconds_saying_why(tmp_path):
    # nothing listens on the loopback's port 9: the connection is refused at once
    done, elapsed = _load_in_subprocess({"HF_ENDPOINT": "http://127.0.0.1:9",
                                         "HF_HUB_OFFLINE": "0"}, tmp_path)
    assert "UNAVAILABLE: cannot reach the Hugging Face hub" in done.stdout, done.stderr[-2000:]
    assert elapsed < 30


def test_download_progress_reaches_the_status_line():
    import io

    from engine.reasoning.model import _progress_bar

    said = []
    bar = _progress_bar(said.append, "org/model")(total=4, file=io.StringIO())
    bar.update(1)
    bar.update(3)
    assert said == ["fetching org/model: 1 of 4 files", "fetching org/model: 4 of 4 files"]


def test_cpu_quantised_weights_are_cached_and_reused(tiny_checkpoint, tmp_path, monkeypatch):
    """Quantising the 7B on a CPU takes minutes: the result is kept, keyed by the checkpoint and
    the settings, and the next load reads it; it reasons exactly as the fresh one."""
    import os

    from engine.audio import from_array
    from engine.prosody import synth
    from engine.reasoning.model import quantized_cache_dir
    from engine.reasoning.reasoner import Done, Reasoner

    monkeypatch.setenv("ET_QUANT_CACHE", str(tmp_path / "cache"))
    clip = from_array(synth.harmonic(160, 2.0, syllable_hz=4.0), 16000)

    def tokens(loaded):
        return [e for e in Reasoner(loaded).stream(clip, max_new_tokens=16, score=False)
                if isinstance(e, Done)][0].token_ids

    said: list[str] = []
    fresh = load_model(str(tiny_checkpoint), quant="nf4", device="cpu", progress=said.append)
    assert any("caching the quantised weights" in m for m in said)
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and (caches[0] / "config.json").exists()
    said.clear()
    again = load_model(str(tiny_checkpoint), quant="nf4", device="cpu", progress=said.append)
    assert any("quantised earlier" in m for m in said)
    assert tokens(again) == tokens(fresh)
    # the model names its source, not the cache: an adapter trained on it records that base
    assert again.model.name_or_path == again.model.config._name_or_path == str(tiny_checkpoint)
    dtype = str(next(p for p in fresh.model.parameters() if p.dtype.is_floating_point).dtype)
    assert quantized_cache_dir(tiny_checkpoint, "nf4", True, dtype) != caches[0]  # other settings
    shard = sorted(tiny_checkpoint.glob("*.safetensors"))[0]
    stat = shard.stat()
    os.utime(shard, (stat.st_atime, stat.st_mtime + 10))  # the checkpoint changed
    try:
        assert quantized_cache_dir(tiny_checkpoint, "nf4", False, dtype) != caches[0]
    finally:
        os.utime(shard, (stat.st_atime, stat.st_mtime))
    monkeypatch.setenv("ET_QUANT_CACHE", "off")
    assert quantized_cache_dir(tiny_checkpoint, "nf4", False, dtype) is None


def test_a_damaged_or_unfinished_cache_is_quantised_again(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("ET_QUANT_CACHE", str(tmp_path / "cache"))
    load_model(str(tiny_checkpoint), quant="nf4", device="cpu")
    (cache,) = (tmp_path / "cache").iterdir()
    shard = next(cache.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])  # a broken disk, a power cut
    said: list[str] = []
    load_model(str(tiny_checkpoint), quant="nf4", device="cpu", progress=said.append)
    assert any("caching the quantised weights" in m for m in said)  # rebuilt, not failed
    (cache / "COMPLETE").unlink()  # a save that never finished
    said.clear()
    load_model(str(tiny_checkpoint), quant="nf4", device="cpu", progress=said.append)
    assert not any("quantised earlier" in m for m in said)
    assert (cache / "COMPLETE").exists() and not list((tmp_path / "cache").glob(".partial-*"))


def test_a_changed_configuration_file_changes_the_cache(tiny_checkpoint, tmp_path, monkeypatch):
    import shutil

    from engine.reasoning.model import quantized_cache_dir

    monkeypatch.setenv("ET_QUANT_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    before = quantized_cache_dir(copy, "nf4", False, "torch.bfloat16")
    (copy / "generation_config.json").write_text('{"repetition_penalty": 1.3}')
    assert quantized_cache_dir(copy, "nf4", False, "torch.bfloat16") != before


def test_auto_puts_each_launched_process_on_its_own_gpu():
    """Once: under `accelerate launch` every rank loaded the 7B onto GPU 0."""
    from engine.reasoning.model import auto_device

    assert auto_device(True, {"LOCAL_RANK": "1"}, gpus=8) == "cuda:1"
    assert auto_device(True, {}, gpus=8) == "cuda:0"
    assert auto_device(True, {"LOCAL_RANK": "3"}, gpus=1) == "cuda:0"  # a scheduler shows each rank one
    assert auto_device(False, {"LOCAL_RANK": "1"}) == "cpu"
