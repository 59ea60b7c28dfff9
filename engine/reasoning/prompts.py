"""The released EmotionThinker model's exact strings: system prompt, question, labels, tags.

Everything the model is asked lives here and nowhere else (docs/paper.md §1). Changing a byte here
changes what the released weights see; anything this project adds (scores, grounding) sits beside
these strings and never inside them.

    from engine.reasoning.prompts import build_messages, LABELS
    messages = build_messages()     # system + user(audio, question), for a chat template
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>."
)

QUESTION = (
    "What is the emotion expressed in this audio clip? Please choose one from the following "
    "options: neutral, happy, sad, angry, contempt or disgust, confused, whisper, surprise, fear."
)

# The public inference script writes a literal "<audio>" before the question although the chat
# template already places the audio; kept by default so the weights see what they were tuned on.
AUDIO_PREFIX = "<audio>"

# The nine labels, in the order the question lists them; "contempt" is offered as
# "contempt or disgust" (LABEL_OPTIONS holds each label's wording in the question).
LABELS = ("neutral", "happy", "sad", "angry", "contempt", "confused", "whisper", "surprise", "fear")
LABEL_OPTIONS = {label: ("contempt or disgust" if label == "contempt" else label) for label in LABELS}
# What a model may write as each answer: the question's wording, and for contempt also the one
# word train.data's targets write ("contempt") and its other half ("disgust"). The scores take
# each label's best spelling, so training, scoring and parsing agree on the label.
LABEL_SPELLINGS = {label: (LABEL_OPTIONS[label],) + (("contempt", "disgust") if label == "contempt" else ())
                   for label in LABELS}

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Qwen2.5-Omni's chat template (from the Qwen2.5-Omni-7B release). The released checkpoint ships
# its own copy and that one is used; this copy serves checkpoints made here (engine.reasoning.tiny).
QWEN_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_messages(audio_prefix: bool = True) -> list[dict]:
    """The conversation the released model was tuned on: the fixed system prompt, then a user turn
    holding one audio part and the question (with the literal "<audio>" prefix by default)."""
    question = (AUDIO_PREFIX if audio_prefix else "") + QUESTION
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": question}]},
    ]
