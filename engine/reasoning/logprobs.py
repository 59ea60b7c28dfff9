"""The log-probability of each generated token, and of its most likely alternatives.

    from engine.reasoning.logprobs import token_logprobs
    chosen = token_logprobs(model, inputs, token_ids, top=5)   # one TokenLogprob per token

What OpenAI's `logprobs` / `top_logprobs` return (engine.serve speaks them): log-softmax of the
model's own logits (before temperature, top-p or any other processor, as vLLM returns them by
default), for the token that was written and for the `top` most likely tokens at that place.

Computed after the generation, by one teacher-forced forward over the prompt and the generated
tokens (as long as a prefill, on the scheduler's thread like the label scores), not inside the
decode loop: one path for every way of decoding (the engine's loop, compiled or not, batched or
not, and `generate`), exact by construction. The cost is the wait: a streaming client receives
the log-probabilities after the last token, not with each one (engine.serve sends them in the
closing chunk). In float32 the values equal the decode loop's own logits' (tests/test_serve.py);
in bf16 a prefill and a one-token step round differently (on the tiny model by up to ~0.05 in
log-probability: enough, now and then, for the greedy token to come second by the forward's count).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TOP = 20  # OpenAI's bound on top_logprobs (vLLM's default bound too)
SLICE_TOKENS = 256  # log-softmax this many positions at a time: 256 x 152k x 4 bytes = 156 MB
#   of float32, where all 8192 of a long answer at once would take 5 GB


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int  # the token written
    logprob: float  # its natural-log probability under the model's logits at that place
    top: tuple[tuple[int, float], ...]  # (token id, logprob) of the most likely tokens there, best first


def token_logprobs(model, inputs, token_ids: list[int], top: int = 0) -> list[TokenLogprob]:
    """Log-probabilities of `token_ids`, generated after the prompt `inputs` (the processor's
    BatchFeature for one clip, on the model's device), with the `top` (0-20) best alternatives."""
    import torch

    if not 0 <= top <= MAX_TOP:
        raise ValueError(f"top must be 0 to {MAX_TOP}; got {top}")
    if not token_ids:
        return []
    prompt = inputs["input_ids"]
    generated = torch.tensor([token_ids], dtype=prompt.dtype, device=prompt.device)
    ids = torch.cat([prompt, generated], dim=1)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **extra)
    # the logits that predicted token i sit at position prompt + i - 1 (the thinker has no
    # logits_to_keep: it returns the whole sequence's, in the model's dtype)
    logits = out.logits[0, prompt.shape[1] - 1:-1]
    chosen, best = [], []
    for at in range(0, len(token_ids), SLICE_TOKENS):  # float32 over the vocabulary, a slice at a time
        logp = torch.log_softmax(logits[at:at + SLICE_TOKENS].float(), dim=-1)
        chosen += logp.gather(-1, generated[0, at:at + SLICE_TOKENS].unsqueeze(-1)).squeeze(-1).tolist()
        if top:
            values, indices = logp.topk(top, dim=-1)
            best += [tuple(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    best = best or [()] * len(token_ids)
    return [TokenLogprob(t, lp, b) for t, lp, b in zip(token_ids, chosen, best)]


def token_bytes(tokenizer, ids: list[int]) -> list[bytes]:
    """The UTF-8 bytes each token stands for (a byte-level BPE token may hold part of a
    character, so its bytes, not a decoded string, are what concatenate to the text)."""
    decoder = _byte_decoder()
    out = []
    for piece, i in zip(tokenizer.convert_ids_to_tokens(ids), ids):
        if piece is not None and all(ch in decoder for ch in piece):
            out.append(bytes(decoder[ch] for ch in piece))
        else:  # not a byte-level vocabulary entry: its decoded text
            out.append(tokenizer.decode([i]).encode())
    return out


def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}
