"""Model inputs: an audio+text processor for the EmotionThinker thinker, without the 300 s padding.

The stock `Qwen2_5OmniProcessor` cannot be built here (it insists on a video processor, which
needs torchvision) and its Whisper feature extractor pads every clip to 300 s before the STFT
(0.1-0.6 s of CPU per clip). `EmotionThinkerProcessor` is the same processor for audio and text
only, and computes the log-mel for the clip's real length: the waveform is zero-padded by one FFT
window, which is all the frames that the stock path keeps (`ceil(samples / hop)`) ever see of its
padding, so the kept frames, the global max used for Whisper's dynamic-range clamp, and therefore
the features and the number of audio tokens are the same (tests/test_features.py proves it
against the stock extractor).

    processor = load_processor(checkpoint_dir)
    inputs = processor(text=prompt, audio=[samples_16k], return_tensors="pt")
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from transformers import BatchFeature
from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor
from transformers.processing_utils import ProcessorMixin

from engine.reasoning.prompts import QWEN_OMNI_CHAT_TEMPLATE

OMNI_TOKENS = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>",
               "audio_eos_token": "<|audio_eos|>", "image_token": "<|IMAGE|>",
               "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
               "vision_eos_token": "<|vision_eos|>"}  # Qwen2.5-Omni's special tokens


def placeholder_ids(config, tokenizer) -> list[int]:
    """The ids of the audio, image and video placeholder and boundary tokens: what a model must
    never sample (a sampled placeholder breaks the next forward that carries audio)."""
    names = ("audio_token_index", "image_token_index", "video_token_index", "audio_start_token_id",
             "audio_end_token_id", "vision_start_token_id", "vision_end_token_id")
    ids = {getattr(config, n, None) for n in names} | {tokenizer.convert_tokens_to_ids("<|vision_pad|>")}
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def audio_token_count(n_frames: int) -> int:
    """Audio tokens the thinker makes from `n_frames` mel frames (two stride-2 stages: 25/s)."""
    after_conv = (n_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def log_mel(feature_extractor, samples: np.ndarray) -> np.ndarray:
    """Whisper log-mel features `[n_mels, ceil(n / hop)]` of one 16 kHz clip, identical to the
    valid frames of the stock extractor's 300 s-padded output."""
    hop, n_fft = feature_extractor.hop_length, feature_extractor.n_fft
    x = np.asarray(samples, dtype=np.float32)
    n_frames = math.ceil(len(x) / hop)
    padded = np.zeros(len(x) + n_fft, dtype=np.float32)
    padded[: len(x)] = x
    extract = getattr(feature_extractor, "_torch_extract_fbank_features", None)
    try:
        import torch  # noqa: F401

        features = extract(padded[None, :], "cpu")[0]
    except ImportError:  # numpy path, as the stock extractor takes without torch
        features = feature_extractor._np_extract_fbank_features(padded[None, :], "cpu")[0]
    return np.ascontiguousarray(features[:, :n_frames], dtype=np.float32)


class EmotionThinkerProcessor(Qwen2_5OmniProcessor):
    """Qwen2.5-Omni's processor for audio and text (no image or video processor)."""

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None):
        ProcessorMixin.__init__(self, feature_extractor, tokenizer, chat_template=chat_template)
        vocab = tokenizer.get_vocab()
        for name, default in OMNI_TOKENS.items():
            # a tokenizer config may omit the attribute while its vocabulary has the token
            value = getattr(tokenizer, name, None) or (default if default in vocab else None)
            setattr(self, name, value)
        if self.audio_token is None:
            raise ValueError("the tokenizer has no audio token (<|AUDIO|>): not a Qwen2.5-Omni tokenizer")

    def __call__(self, text=None, audio=None, return_tensors="pt", **kwargs) -> BatchFeature:
        """Tokenise `text` (a string or a list, one per sample) with each audio placeholder
        expanded to its clip's token count; `audio` is a list of 16 kHz float arrays, in the order
        their placeholders appear. Returns input_ids, attention_mask and, with audio,
        input_features `[n_clips, n_mels, max_frames]` and feature_attention_mask."""
        if text is None:
            raise ValueError("text is required")
        texts = [text] if isinstance(text, str) else list(text)
        clips = [] if audio is None else ([audio] if isinstance(audio, np.ndarray) else list(audio))
        data = {}
        if clips:
            mels = [log_mel(self.feature_extractor, clip) for clip in clips]
            longest = max(m.shape[1] for m in mels)
            features = np.zeros((len(mels), mels[0].shape[0], longest), np.float32)
            mask = np.zeros((len(mels), longest), np.int64)
            for i, m in enumerate(mels):
                features[i, :, : m.shape[1]] = m
                mask[i, : m.shape[1]] = 1
            data.update(input_features=features, feature_attention_mask=mask)
            counts = iter(audio_token_count(m.shape[1]) for m in mels)
            texts = [self._expand(t, counts) for t in texts]
            if next(counts, None) is not None:
                raise ValueError(f"{len(clips)} clips but fewer audio placeholders in the text")
        kwargs.setdefault("padding", len(texts) > 1)
        kwargs.setdefault("padding_side", "left")
        data.update(self.tokenizer(texts, **kwargs))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _expand(self, text: str, counts) -> str:
        pieces = text.split(self.audio_token)
        out = [pieces[0]]
        for piece in pieces[1:]:
            n = next(counts, None)
            if n is None:
                raise ValueError("more audio placeholders in the text than clips")
            out.append(self.audio_token * n + piece)
        return "".join(out)


def load_processor(path: str | Path) -> EmotionThinkerProcessor:
    """The processor of a local checkpoint: its tokenizer, its Whisper feature extractor
    (preprocessor_config.json) and its chat template (chat_template.json / .jinja, else the
    tokenizer's, else Qwen2.5-Omni's)."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    config = json.loads((path / "preprocessor_config.json").read_text())
    fields = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft",
              "padding_value", "return_attention_mask", "dither")
    extractor = WhisperFeatureExtractor(**{k: config[k] for k in fields if k in config})
    template = None
    if (path / "chat_template.jinja").exists():
        template = (path / "chat_template.jinja").read_text()
    elif (path / "chat_template.json").exists():
        template = json.loads((path / "chat_template.json").read_text()).get("chat_template")
    template = template or getattr(tokenizer, "chat_template", None) or QWEN_OMNI_CHAT_TEMPLATE
    return EmotionThinkerProcessor(feature_extractor=extractor, tokenizer=tokenizer,
                                   chat_template=template)
