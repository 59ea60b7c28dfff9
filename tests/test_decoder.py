"""The engine's static-cache decode loop (engine.reasoning.decoder), eager and compiled, against
transformers' own `generate` on the tiny model: the same tokens, greedy and sampled, across clip
lengths; prompt stops; no recompiling within a bucket; a failed compile falls back to eager."""

import logging
import threading

import pytest
import torch

from engine.audio import from_array
from engine.prosody import synth
from engine.reasoning.decoder import CACHE_BUCKETS
from engine.reasoning.options import GenerationOptions
from engine.reasoning.reasoner import Done, Reasoner


def clip_of(seconds: float, f0: float = 160.0):
    return from_array(synth.harmonic(f0, seconds, syllable_hz=4.0), 16000)


def reference(reasoner, clip, options: GenerationOptions) -> list[int]:
    """What plain `generate` produces for this clip and these options."""
    inputs = reasoner.inputs(clip)
    out = options.generate(reasoner.model, reasoner.tokenizer, inputs)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def done_of(reasoner, clip, **kw) -> Done:
    return [e for e in reasoner.stream(clip, score=False, **kw) if isinstance(e, Done)][0]


@pytest.fixture(scope="module")
def reasoner(tiny_model):
    """The engine's loop, eager (the CPU default is generate: the loop pays when compiled)."""
    return Reasoner(tiny_model, static_cache=True, compile=False)


def test_the_defaults_on_a_cpu_decode_with_generate(tiny_model):
    done = done_of(Reasoner(tiny_model), clip_of(1.0), max_new_tokens=5)
    assert done.decoder == "generate" and done.n_tokens == 5


@pytest.mark.parametrize("seconds,tokens", [(1.0, 30), (3.0, 60), (7.0, 25)])
def test_the_static_loop_writes_exactly_what_generate_writes(reasoner, seconds, tokens):
    clip = clip_of(seconds)
    done = done_of(reasoner, clip, max_new_tokens=tokens)
    assert done.decoder == "static"  # the engine's loop ran, not generate
    assert list(done.token_ids) == reference(reasoner, clip, GenerationOptions(max_new_tokens=tokens))


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5)])
def test_seeded_sampling_matches_generate_token_for_token(reasoner, temperature, top_p):
    clip = clip_of(2.0)
    options = GenerationOptions(max_new_tokens=40, temperature=temperature, top_p=top_p, seed=11)
    done = done_of(reasoner, clip, options=options)
    assert done.decoder == "static"
    assert list(done.token_ids) == reference(reasoner, clip, options)


def test_a_generation_config_it_cannot_reproduce_goes_to_generate(tiny_model):
    """A checkpoint whose generation config sets a repetition penalty: `generate` serves it."""
    import copy

    config = copy.deepcopy(tiny_model.model.generation_config)
    tiny_model.model.generation_config.repetition_penalty = 1.3
    try:
        reasoner = Reasoner(tiny_model, static_cache=True)
        clip = clip_of(1.5)
        done = done_of(reasoner, clip, max_new_tokens=20)
        assert done.decoder == "generate"
        assert list(done.token_ids) == reference(reasoner, clip, GenerationOptions(max_new_tokens=20))
    finally:
        tiny_model.model.generation_config = config


def test_buckets_cover_long_prompts_and_budgets(reasoner):
    d = reasoner.decoder
    assert d.bucket_for(400, 1024) == 2048 and d.bucket_for(1, 1023) == 1024
    assert d.bucket_for(3100, 2048) == 8192 and d.bucket_for(CACHE_BUCKETS[-1], 1) is None


@pytest.fixture(scope="module")
def compiled(tiny_model):
    return Reasoner(tiny_model, compile=True)


@pytest.mark.slow
def test_compiled_decoding_is_token_identical_and_does_not_recompile_within_a_bucket(compiled):
    from torch._dynamo.utils import counters

    first_clip, second_clip = clip_of(2.0), clip_of(5.0, f0=210.0)  # both in the 1024 bucket
    first = done_of(compiled, first_clip, max_new_tokens=48)
    assert first.decoder == "compiled" and first.compile_s > 0
    assert list(first.token_ids) == reference(compiled, first_clip, GenerationOptions(max_new_tokens=48))
    graphs = counters["stats"]["unique_graphs"]
    second = done_of(compiled, second_clip, max_new_tokens=48)
    assert second.decoder == "compiled" and second.compile_s == 0
    assert counters["stats"]["unique_graphs"] == graphs  # the other clip length: no new graph
    assert list(second.token_ids) == reference(compiled, second_clip, GenerationOptions(max_new_tokens=48))


@pytest.mark.slow
def test_compiled_decoding_stops_promptly(compiled):
    stop = threading.Event()
    n = 0
    for event in compiled.stream(clip_of(2.0), max_new_tokens=500, stop=stop, score=False):
        if isinstance(event, Done):
            done = event
        elif event.__class__.__name__ == "TextDelta":
            n += 1
            if n == 3:
                stop.set()
    assert done.stop_reason == "stopped" and done.n_tokens < 40


@pytest.mark.slow
def test_a_failed_compile_falls_back_to_eager_with_one_warning(tiny_model, monkeypatch, caplog):
    def broken_compile(fn, **kwargs):  # a fault injected where inductor would fail
        def fails(*args):
            raise RuntimeError("no C++ compiler (injected)")
        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    reasoner = Reasoner(tiny_model, compile=True)
    clip = clip_of(2.0)
    with caplog.at_level(logging.WARNING, logger="engine.reasoning.decoder"):
        first = done_of(reasoner, clip, max_new_tokens=20)
        second = done_of(reasoner, clip, max_new_tokens=20)
    warnings = [r for r in caplog.records if r.name == "engine.reasoning.decoder"]
    assert len(warnings) == 1 and "decoding eagerly" in warnings[0].message
    assert first.decoder == second.decoder == "static"
    assert list(first.token_ids) == list(second.token_ids) == reference(
        reasoner, clip, GenerationOptions(max_new_tokens=20))


@pytest.mark.slow
def test_compiled_continuous_batching_is_token_identical_and_compiles_each_width_once(tiny_model):
    """A request that joins a compiled batch: the batch moves from the one-row graph to the
    max_batch-row graph, both rows write generate's tokens, and the next time nothing compiles."""
    import time

    from torch._dynamo.utils import counters

    reasoner = Reasoner(tiny_model, compile=True, max_batch=4)
    first_clip, second_clip = clip_of(1.0), clip_of(1.0, f0=230.0)
    budgets = {first_clip: 200, second_clip: 24}
    expected = {c: reference(reasoner, c, GenerationOptions(max_new_tokens=n)) for c, n in budgets.items()}

    def joined():
        first = reasoner.submit(first_clip, max_new_tokens=budgets[first_clip], score=False)
        while len(first.tokens) < 3:
            time.sleep(0.005)
        second = reasoner.submit(second_clip, max_new_tokens=budgets[second_clip], score=False)
        dones = [list(reasoner.events(r))[-1] for r in (first, second)]
        for r in (first, second):
            reasoner.release(r)
        assert dones[1].batch == 2 and {d.decoder for d in dones} == {"compiled"}
        assert [list(d.token_ids) for d in dones] == [expected[first_clip], expected[second_clip]]
        return dones

    joined()
    graphs = counters["stats"]["unique_graphs"]
    again = joined()
    assert counters["stats"]["unique_graphs"] == graphs and again[1].compile_s == 0


@pytest.mark.slow
def test_after_the_warm_up_no_request_compiles(tiny_model):
    """The app's warm-up compiles the steps (one row, and max_batch rows) on caches allocated
    outside compiled code (static addresses); then a clip of another length, alone or joined by
    a second, compiles nothing: no user pays for a compile."""
    import time

    from torch._dynamo.utils import counters

    reasoner = Reasoner(tiny_model, compile=True, max_batch=4)
    reasoner.warmup(budgets=(200,))
    graphs = counters["stats"]["unique_graphs"]
    first = reasoner.submit(clip_of(6.0, f0=190.0), max_new_tokens=200, score=False)
    while len(first.tokens) < 3:
        time.sleep(0.005)
    second = reasoner.submit(clip_of(3.0, f0=240.0), max_new_tokens=20, score=False)
    dones = [list(reasoner.events(r))[-1] for r in (first, second)]
    for r in (first, second):
        reasoner.release(r)
    assert dones[1].batch == 2 and {d.decoder for d in dones} == {"compiled"}
    assert counters["stats"]["unique_graphs"] == graphs and all(d.compile_s == 0 for d in dones)
