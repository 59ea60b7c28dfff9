"""A random-weight EmotionThinker checkpoint, laid out like the released one, for tests and benches.

    python -m engine.reasoning.tiny DIR                  # tiny: ~1 MB of weights, loads in a second on a CPU
    python -m engine.reasoning.tiny DIR --thinker-only   # the layout `thinker.save_pretrained` writes
    python -m engine.reasoning.tiny DIR --full-size      # the 7B thinker's shapes (~18 GB bf16): GPU benches

The layout copies the release (a full Qwen2.5-Omni checkpoint): `config.json` with a
`thinker_config`, sharded safetensors with `thinker.*` keys plus a shard of non-thinker weights
and `model.safetensors.index.json`, `preprocessor_config.json` (WhisperFeatureExtractor, 128 mel
bins, hop 160, chunk_length 300, beside Qwen's image-processor fields), a byte-level BPE tokenizer
with the Qwen special tokens, `chat_template.json` and `generation_config.json`. So
`engine.reasoning.model.load_model(DIR)` takes exactly the path users take with the real weights. Only the
vocabulary is small (its special-token ids differ from the real 151643+; code must read ids from
the tokenizer and config, never hard-code them). Weights are random: the text it generates is
noise, which is what the tests need: real decoding, real parsing, no faked output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.audio import SAMPLE_RATE_HZ
from engine.reasoning.prompts import LABEL_OPTIONS, QUESTION, QWEN_OMNI_CHAT_TEMPLATE, SYSTEM_PROMPT

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
                  "<|audio_eos|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
                  "<|IMAGE|>", "<|VIDEO|>")
TOKEN_ATTRIBUTES = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>",
                    "audio_eos_token": "<|audio_eos|>", "image_token": "<|IMAGE|>",
                    "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
                    "vision_eos_token": "<|vision_eos|>"}
TINY_VOCAB = 700  # BPE merges learnt from the prompts, tags and prosody words (+ 256 bytes)
FULL_VOCAB = 152064  # Qwen2.5-Omni-7B's embedding rows
CORPUS = [SYSTEM_PROMPT, QUESTION, " ".join(LABEL_OPTIONS.values()), "system\nuser\nassistant\n",
          "<think> The speaker's pitch is high and rising, the voice is loud and fast, with short "
          "pauses; a trembling, breathy whisper sounds low, soft and slow. </think>"
          "<answer> happy </answer>"]
FEATURE_EXTRACTOR = {  # Qwen2.5-Omni's audio front end: Whisper-style log-mel, padded to 300 s
    "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    "sampling_rate": SAMPLE_RATE_HZ, "hop_length": 160, "chunk_length": 300, "n_fft": 400,
    "n_samples": 4800000, "nb_max_frames": 30000, "padding_side": "right", "padding_value": 0.0,
    "return_attention_mask": True, "dither": 0.0, "processor_class": "Qwen2_5OmniProcessor",
    # the release's file also configures the image processor; kept for a faithful layout
    "image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 3136, "max_pixels": 12845056,
    "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
}


def build_tokenizer(out_dir: Path):
    """A byte-level BPE tokenizer with Qwen2's pre-tokenizer and the Qwen special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 8, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token=None,
                               extra_special_tokens=TOKEN_ATTRIBUTES)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def thinker_config(tokenizer, full_size: bool = False, deep: bool = False):
    """The thinker's config: the 7B shapes (transformers' defaults are Qwen2.5-Omni-7B) or tiny
    ones (`deep`: with the 7B's 28 decoder layers), special-token ids taken from `tokenizer`."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in TOKEN_ATTRIBUTES.items()}
    text = {"vocab_size": FULL_VOCAB if full_size else len(tokenizer), "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [16, 24, 24] if full_size else [4, 2, 2]},
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    audio: dict = {"num_mel_bins": 128, "n_window": 100, "max_source_positions": 1500}
    # Qwen2.5-Omni-7B's vision encoder (the loader skips its blocks; the checkpoint holds them)
    vision: dict = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                    "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31]}
    if not full_size:
        text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=28 if deep else 2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192)
        audio.update(d_model=32, encoder_layers=2, encoder_attention_heads=2,
                     encoder_ffn_dim=64, output_dim=64)
        vision.update(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                      out_hidden_size=64, fullatt_block_indexes=[0])
    return Qwen2_5OmniThinkerConfig(
        text_config=text, audio_config=audio, vision_config=vision,
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"],
        video_token_index=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"], vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
        user_token_id=tokenizer.convert_tokens_to_ids("user"), tie_word_embeddings=False)


def build(out_dir: str | Path, *, full_size: bool = False, thinker_only: bool = False,
          seed: int = 0, deep: bool = False) -> Path:
    """Write a random-weight checkpoint to `out_dir` and return its path."""
    import torch
    from transformers import GenerationConfig
    from transformers.models.qwen2_5_omni import Qwen2_5OmniConfig, Qwen2_5OmniThinkerForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    cfg = thinker_config(tokenizer, full_size, deep=deep)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if full_size else torch.float32
    model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(cfg, dtype=dtype)
    if thinker_only:
        model.save_pretrained(out, max_shard_size="5GB")
    else:
        talker = {"audio_start_token_id": cfg.audio_start_token_id,  # the talker is never built
                  "audio_end_token_id": cfg.audio_end_token_id}
        Qwen2_5OmniConfig(thinker_config=cfg.to_dict(), talker_config=talker,
                          enable_audio_output=False).save_pretrained(out)
        _save_full_layout(model, out)
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                     bos_token_id=None).save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(FEATURE_EXTRACTOR, indent=2))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_OMNI_CHAT_TEMPLATE}))
    return out


def _save_full_layout(model, out: Path) -> None:
    """Shard like the release: thinker weights under `thinker.`, then a shard of other weights."""
    import torch
    from safetensors.torch import save_file

    state = {f"thinker.{k}": v.contiguous() for k, v in model.state_dict().items()}
    shards, current, size, limit = [], {}, 0, 5 * 2**30
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensor
        size += nbytes
    shards.append(current)
    # what the release holds beside the thinker (talker, token2wav): never loaded by this project
    shards.append({"talker.model.embed_tokens.weight": torch.zeros(8, 8),
                   "token2wav.code_embedding.weight": torch.zeros(8, 8)})
    total, weight_map = len(shards), {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{total:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total_size = sum(t.numel() * t.element_size() for s in shards for t in s.values())
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--full-size", action="store_true", help="the 7B thinker's shapes (~18 GB)")
    ap.add_argument("--thinker-only", action="store_true", help="thinker keys, thinker config")
    ap.add_argument("--deep", action="store_true", help="tiny width, the 7B's 28 layers (CPU proxy)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    path = build(args.out_dir, full_size=args.full_size, thinker_only=args.thinker_only,
                 seed=args.seed, deep=args.deep)
    print(f"wrote a random-weight {'7B-shaped' if args.full_size else 'tiny'} checkpoint to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
