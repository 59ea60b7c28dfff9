"""The Gradio app: layout (ui.py), handlers, figures, rendering, the model service, the
desktop microphone tool (mic.py). UI only: measurements and the model live in engine/."""
