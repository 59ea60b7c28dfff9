"""The audio+text processor: the same features and audio tokens as the stock 300 s-padded path."""

import numpy as np
import pytest

from engine.prosody import synth
from engine.reasoning.features import audio_token_count, load_processor, log_mel


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return load_processor(tiny_checkpoint)


@pytest.mark.parametrize("seconds", [0.25, 1.0, 2.37, 10.0061, 30.0])
def test_features_equal_the_stock_extractor_on_valid_frames(processor, seconds):
    x = synth.harmonic(170, seconds, syllable_hz=4.0)
    x[: len(x) // 3] *= 0.01  # a quiet start: the dynamic-range clamp must act the same
    fe = processor.feature_extractor
    stock = fe(x, sampling_rate=16000, padding="max_length", return_attention_mask=True,
               return_tensors="np")
    assert stock["input_features"].shape[-1] == 30000  # the stock path pads to 300 s
    valid = int(stock["attention_mask"].sum())
    ours = log_mel(fe, x)
    assert ours.shape == (128, valid)
    np.testing.assert_allclose(ours, stock["input_features"][0, :, :valid], atol=1e-6)


def test_silence_features_match_too(processor):
    x = np.zeros(16000, np.float32)
    fe = processor.feature_extractor
    stock = fe(x, sampling_rate=16000, padding="max_length", return_attention_mask=True,
               return_tensors="np")
    np.testing.assert_allclose(log_mel(fe, x), stock["input_features"][0, :, :100], atol=1e-6)


@pytest.mark.parametrize("seconds", [0.25, 1.0, 7.77, 30.0])
def test_audio_token_count_matches_the_stock_processor_formula_and_the_model(processor, tiny_model,
                                                                              seconds):
    import torch

    x = synth.harmonic(150, seconds)
    n_frames = log_mel(processor.feature_extractor, x).shape[1]
    # the stock processor: input_lengths = (frames - 1) // 2 + 1; tokens = (that - 2) // 2 + 1
    expected = ((n_frames - 1) // 2 + 1 - 2) // 2 + 1
    assert audio_token_count(n_frames) == expected
    assert abs(expected - 25 * seconds) <= 1  # 25 audio tokens per second (docs/paper.md §1)
    batch = processor(text="<|audio_bos|><|AUDIO|><|audio_eos|>hi", audio=[x])
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    assert int((batch["input_ids"] == audio_id).sum()) == expected
    with torch.no_grad():  # the thinker itself checks that tokens and audio features agree
        out = tiny_model.model(**batch)
    assert out.logits.shape[1] == batch["input_ids"].shape[1]


def test_two_clips_of_different_lengths_are_padded_and_masked(processor):
    a, b = synth.harmonic(150, 1.0), synth.harmonic(150, 2.5)
    text = "<|AUDIO|> and <|AUDIO|>"
    batch = processor(text=text, audio=[a, b])
    assert batch["input_features"].shape == (2, 128, 250)
    assert batch["feature_attention_mask"].sum(-1).tolist() == [100, 250]
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    assert int((batch["input_ids"] == audio_id).sum()) == audio_token_count(100) + audio_token_count(250)


def test_placeholder_and_clip_counts_must_agree(processor):
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="<|AUDIO|>", audio=[synth.harmonic(150, 1.0)] * 2)
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="<|AUDIO|><|AUDIO|>", audio=[synth.harmonic(150, 1.0)])


def test_prompt_is_the_released_models_byte_for_byte(processor):
    from engine.reasoning.prompts import QUESTION, SYSTEM_PROMPT, build_messages

    text = processor.apply_chat_template(build_messages(), add_generation_prompt=True, tokenize=False)
    assert text == (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
                    f"<|audio_bos|><|AUDIO|><|audio_eos|><audio>{QUESTION}<|im_end|>\n"
                    "<|im_start|>assistant\n")
    plain = processor.apply_chat_template(build_messages(audio_prefix=False),
                                          add_generation_prompt=True, tokenize=False)
    assert f"<|audio_eos|>{QUESTION}" in plain


def test_a_tokenizer_config_without_the_token_attributes_still_works(tiny_checkpoint, tmp_path):
    """Older Qwen2.5-Omni tokenizer configs name no audio_token; the vocabulary has it."""
    import json
    import shutil

    for f in tiny_checkpoint.iterdir():
        if f.is_file():
            shutil.copy2(f, tmp_path / f.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    for key in ("audio_token", "audio_bos_token", "audio_eos_token", "image_token", "video_token",
                "vision_bos_token", "vision_eos_token"):
        config.pop(key, None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    processor = load_processor(tmp_path)
    assert processor.audio_token == "<|AUDIO|>" and processor.audio_bos_token == "<|audio_bos|>"
    batch = processor(text="<|audio_bos|><|AUDIO|><|audio_eos|>", audio=[synth.harmonic(150, 1.0)])
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert int((batch["input_ids"] == audio_id).sum()) == audio_token_count(100)
