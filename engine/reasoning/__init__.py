"""Reasoning: the EmotionThinker thinker listening to a clip and explaining its emotion.

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner
    for event in Reasoner(load_model()).stream(clip):   # TextDelta ..., Answer, Done
        ...

    model.py      load the thinker (hub id or directory; nf4 / int8 / bf16 / fp32; LoRA adapters)
    features.py   the audio+text processor (Whisper features for the clip's real length)
    prompts.py    the released model's system prompt, question, labels and tags, byte-exact
    options.py    GenerationOptions: one place that turns sampling settings into `generate` arguments
    reasoner.py   the streaming Reasoner and its events
    parse.py      the <think>/<answer> parser and label normalisation
    scores.py     a probability for each of the nine labels
    tiny.py       a random-weight checkpoint in the released layout, for tests and benches

Importing this package, model.py, prompts.py, parse.py or options.py is cheap: torch and
transformers load inside the functions that need them (features.py imports transformers at its
top, and is itself imported only when a model is loaded).
"""
