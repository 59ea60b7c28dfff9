"""A tagger plug-in for the tests: it proves the interface, not a real stress model."""


class LoudWordTagger:
    fields = ("stressed_words", "age_level")

    def tag(self, clip, record):
        words = (record.get("transcription") or "").split()
        return {"stressed_words": words[:1] or None, "age_level": "Young Adult"}
