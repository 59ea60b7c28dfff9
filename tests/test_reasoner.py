"""Streaming reasoning on the tiny random-weight model: real decoding, real parsing, real scores."""

import threading
import time

import numpy as np
import pytest
import torch

from engine.audio import from_array
from engine.prosody import synth
from engine.reasoning.options import GenerationOptions
from engine.reasoning.prompts import LABEL_SPELLINGS, LABELS
from engine.reasoning.reasoner import Answer, Done, GenerationError, ReasonerBusy, TextDelta


@pytest.fixture(scope="module")
def clip():
    return from_array(synth.harmonic(160, 2.0, syllable_hz=4.0), 16000)


def run(reasoner, clip, **kw):
    events = list(reasoner.stream(clip, **kw))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    answers = [e for e in events if isinstance(e, Answer)]
    dones = [e for e in events if isinstance(e, Done)]
    assert len(answers) == 1 and len(dones) == 1
    assert events[-1] is dones[0] and events[-2] is answers[0]  # Answer, then Done, last
    return deltas, answers[0], dones[0]


def test_streamed_text_is_exactly_what_generate_produces(reasoner, clip):
    from engine.reasoning.features import placeholder_ids

    deltas, answer, done = run(reasoner, clip, max_new_tokens=40)
    inputs = reasoner.inputs(clip)
    with torch.no_grad():
        out = reasoner.model.generate(**inputs, max_new_tokens=40, do_sample=False,
                                      suppress_tokens=placeholder_ids(reasoner.model.config,
                                                                      reasoner.tokenizer))
    generated = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert list(done.token_ids) == generated
    text = reasoner.tokenizer.decode(generated, skip_special_tokens=True)
    assert "".join(d.text for d in deltas) == text
    assert done.n_tokens == len(generated) and done.stop_reason in ("length", "eos")
    assert done.prompt_tokens == inputs["input_ids"].shape[1] and done.audio_tokens == 50
    assert done.ttft_s > 0 and done.total_s >= done.ttft_s


def test_scores_cover_nine_labels_and_sum_to_one(reasoner, clip):
    _, answer, _ = run(reasoner, clip, max_new_tokens=20)
    assert set(answer.scores) == set(LABELS)
    assert sum(answer.scores.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 < p < 1 for p in answer.scores.values())
    assert answer.scored_label == max(answer.scores, key=answer.scores.get)


def test_scores_equal_a_direct_computation(reasoner, clip):
    """Without the shared cache: one full forward per label over prompt + reasoning + label."""
    from engine.reasoning.scores import _common_prefix_len, answer_prefix, score_labels

    inputs = reasoner.inputs(clip)
    for generated in ("<think> low pitch and slow </think><answer> ",   # an answer was begun
                      "the reasoning was cut off here"):                  # forced answer
        got = score_labels(reasoner.model, inputs, generated, reasoner.tokenizer)
        prefix, space, forced = answer_prefix(generated)
        assert forced == (not generated.endswith("<answer> "))
        spelled = [(l, t) for l in LABELS for t in LABEL_SPELLINGS[l]]
        seqs = [reasoner.tokenizer(prefix + space + t, add_special_tokens=False)["input_ids"]
                for _, t in spelled]
        common = min(_common_prefix_len(seqs), min(map(len, seqs)) - 1)
        means = []
        for seq in seqs:
            ids = torch.cat([inputs["input_ids"], torch.tensor([seq])], dim=1)
            extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
            with torch.no_grad():
                logits = reasoner.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                        **extra).logits[0].float()
            logp = torch.log_softmax(logits, -1)
            start = inputs["input_ids"].shape[1] + common
            means.append(np.mean([logp[i - 1, ids[0, i]].item() for i in range(start, ids.shape[1])]))
        means = [max(m for (lab, _), m in zip(spelled, means) if lab == l) for l in LABELS]  # best spelling
        probs = np.exp(means - np.max(means))
        probs /= probs.sum()
        np.testing.assert_allclose([got.probs[l] for l in LABELS], probs, atol=1e-5)
        np.testing.assert_allclose([got.mean_logprob[l] for l in LABELS], means, atol=1e-4)


def test_answer_prefix_uses_the_models_own_whitespace():
    from engine.reasoning.scores import answer_prefix

    assert answer_prefix("<think>x</think><answer>\n") == ("<think>x</think><answer>", "\n", False)
    assert answer_prefix("<think>x</think><answer>") == ("<think>x</think><answer>", "", False)
    assert answer_prefix("<think>x</think> ") == ("<think>x</think><answer>", " ", True)
    assert answer_prefix("<think>x") == ("<think>x </think><answer>", " ", True)


def test_seeded_sampling_is_reproducible_and_placeholders_never_sampled(reasoner, clip):
    a = run(reasoner, clip, max_new_tokens=80, temperature=3.0, seed=7, score=False)[2]
    b = run(reasoner, clip, max_new_tokens=80, temperature=3.0, seed=7, score=False)[2]
    c = run(reasoner, clip, max_new_tokens=80, temperature=3.0, seed=8, score=False)[2]
    assert a.token_ids == b.token_ids != c.token_ids
    suppressed = GenerationOptions().generate_kwargs(reasoner.model, reasoner.tokenizer)["suppress_tokens"]
    assert set(suppressed) >= {reasoner.model.config.audio_token_index,
                               reasoner.model.config.image_token_index}
    for done in (a, b, c):
        assert not set(done.token_ids) & set(suppressed)


def test_stop_event_ends_generation_promptly(reasoner, clip):
    stop = threading.Event()
    events = []
    for event in reasoner.stream(clip, max_new_tokens=5000, stop=stop, score=False):
        events.append(event)
        if isinstance(event, TextDelta) and len(events) == 3:
            stop.set()
    done = events[-1]
    assert isinstance(done, Done) and done.stop_reason == "stopped"
    assert done.n_tokens < 50


def test_abandoning_the_stream_frees_the_model(reasoner, clip):
    stream = reasoner.stream(clip, max_new_tokens=5000, score=False)
    next(stream)
    start = time.perf_counter()
    stream.close()  # the consumer went away (a closed browser tab)
    assert time.perf_counter() - start < 5
    _, _, done = run(reasoner, clip, max_new_tokens=5, score=False, wait_s=1)
    assert done.n_tokens == 5


def test_second_caller_waits_then_gets_busy(reasoner, clip):
    stream = reasoner.stream(clip, max_new_tokens=5000, score=False)
    next(stream)  # the first caller holds the model
    try:
        with pytest.raises(ReasonerBusy, match="busy"):
            next(reasoner.stream(clip, max_new_tokens=5, wait_s=0.2))
    finally:
        stream.close()
    assert run(reasoner, clip, max_new_tokens=3, score=False, wait_s=2)[2].n_tokens == 3


def test_an_error_inside_generation_reaches_the_caller(reasoner, clip, monkeypatch, caplog):
    def out_of_memory(*args, **kwargs):  # a fault injected where a GPU would run out of memory
        raise RuntimeError("CUDA out of memory (injected)")

    start = time.perf_counter()
    with monkeypatch.context() as m:
        m.setattr(reasoner.model.model, "forward", out_of_memory)  # the text decoder
        with pytest.raises(GenerationError, match="generation failed: CUDA out of memory") as err:
            list(reasoner.stream(clip, max_new_tokens=4))
    assert err.value.__cause__ is not None and time.perf_counter() - start < 10
    failure = next(r for r in caplog.records if r.name == "engine.reasoning.scheduler")
    assert failure.exc_info is not None  # the traceback is logged, not only the short message
    assert run(reasoner, clip, max_new_tokens=2, score=False, wait_s=1)[2].n_tokens == 2


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": -1.0},
                                 {"temperature": float("nan")}, {"temperature": float("inf")},
                                 {"top_p": 0.0}, {"top_p": 1.5}, {"seed": 2**64}, {"seed": -3}])
def test_bad_options_are_refused_before_the_model_is_taken(reasoner, clip, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        next(reasoner.stream(clip, **bad))
    assert run(reasoner, clip, max_new_tokens=1, score=False, wait_s=0.1)[2].n_tokens == 1  # still free
    assert run(reasoner, clip, max_new_tokens=2, score=False, wait_s=1)[2].n_tokens == 2


def test_nf4_path_end_to_end_on_cpu(tiny_checkpoint, clip):
    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner

    r = Reasoner(load_model(str(tiny_checkpoint), quant="nf4"))
    deltas, answer, done = run(r, clip, max_new_tokens=12)
    assert done.n_tokens == 12 and sum(answer.scores.values()) == pytest.approx(1.0)
    assert r.warmup() > 0


def test_a_stalled_process_does_not_lower_the_reported_speed(reasoner, clip, monkeypatch):
    """Once, a run whose process was stopped for a while reported its tokens over wall time."""
    head = reasoner.model.lm_head
    real, calls = head.forward, []

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 15:
            time.sleep(1.5)  # the process is stopped (SIGSTOP) or starved for 1.5 s
        return real(*args, **kwargs)

    steady = run(reasoner, clip, max_new_tokens=40, score=False)[2]
    monkeypatch.setattr(head, "forward", forward)
    stalled = run(reasoner, clip, max_new_tokens=40, score=False)[2]
    assert stalled.stalled_s > 1.3 and steady.stalled_s == 0.0
    assert stalled.tok_per_s > 0.5 * steady.tok_per_s  # over wall time it would be ~20x lower
