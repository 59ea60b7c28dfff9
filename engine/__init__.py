"""The engine: everything the app and train/ share, importable without gradio.

The data path, one module or package per step:

    audio.py       a file or array -> Clip (16 kHz mono float32, facts about the recording)
    prosody/       Clip -> ProsodyReport: Praat pitch, energy, rate, intonation, voice quality,
                   levels and the words for them; PSOLA manipulation; synthetic test signals
    reasoning/     Clip -> reasoning events: loading the thinker, its audio+text processor, the
                   released prompts, generation options, the streaming Reasoner, the answer
                   parser, the nine label scores, the tiny test checkpoint
    grounding.py   the reasoning's prosodic claims checked against the ProsodyReport
    cli.py         `python -m engine analyze|manipulate` (`emotionthinker-engine`)

Heavy imports (torch, transformers) happen inside reasoning/, where they are needed: prosody
alone never loads them.
"""
