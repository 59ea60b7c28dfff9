"""The screen: analyse a clip, play with its prosody, compare two clips. Reads like the page.

    python app.py            # see app/settings.py for the flags and environment variables

Named API endpoints (gradio_client): /prosody (clip, pitch unit, voice type, view -> figure,
summary, measurements), /reason (clip, settings, voice type -> streamed reasoning, nine confidences,
checked claims),
/manipulate (clip, pitch shift, range, tilt, tempo, gain -> re-synthesised clip, overlay),
/compare (two clips -> overlay, two summaries), /export (clip, voice type -> TextGrid, PitchTier,
CSV, JSON files), /imitate (target, attempt -> aligned overlay, scores {"melody", "range",
"tempo", "loudness", "pauses", "overall"}, feedback), /batch (clips or one zip, voice type, ask
the model?, max new tokens -> table, scatter plot, CSV file). Everything else is private.
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from app import figures
from app.examples import EXAMPLE_DIR, example_paths
from app.handlers import VIEWS, Handlers
from app.service import ModelService, RemoteService
from app.settings import Settings
from engine.batch import NUMERIC, Limits
from engine.guard import LoopbackGuard, is_loopback
from engine.prosody.levels import VOICE_TYPES
from engine.reasoning.prompts import LABELS

LIVE_EVERY_S = 0.3  # the microphone's chunks, and so the live plot's updates: ~3 a second
REASON_TOKENS = 1024  # the page's default token budget: its decode step is compiled at warm-up
TITLE = "EmotionThinker, explained: how it was said, and what the model makes of it"
INTRO = ("Speak or upload a clip. The plot shows **how** it was said — pitch and loudness as "
         "Praat measures them — and the summary puts it in words. **Analyse** asks the "
         "EmotionThinker model for the emotion: watch its reasoning, its confidence in each of "
         f"the {len(LABELS)} emotions, and whether its prosodic claims match the measurements.")
CSS = "#reasoning {max-height: 420px; overflow-y: auto} footer {display: none !important}"


def build(settings: Settings, service: ModelService) -> gr.Blocks:
    h = Handlers(service, settings.max_seconds,
                 Limits(max_clips=settings.batch_max_clips, max_bytes=settings.batch_max_mb * 2**20,
                        max_seconds=settings.max_seconds))
    if example_paths():  # pay the first-call costs (imports, caches) now, not on a user's clip
        h.prosody(example_paths()[0])
    keep = settings.keep_files_s  # uploads and outputs are deleted this long after they were made
    with gr.Blocks(title="EmotionThinker, explained", analytics_enabled=False,
                   delete_cache=(max(60, keep // 4), keep)) as demo:
        gr.Markdown(f"## {TITLE}\n{INTRO}")
        status = gr.Markdown(h.status(), elem_id="status")
        gr.Timer(1.0).tick(h.status, None, status, api_visibility="private", queue=False)

        with gr.Tab("Analyse"):
            with gr.Row():
                with gr.Column(scale=2):
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", streaming=True,
                                     label="Speak (the pitch draws as you talk) or upload a clip",
                                     elem_id="clip")
                    # a streaming input shows no player for what it holds: the clip is played here
                    playback = gr.Audio(label="The clip being analysed", interactive=False,
                                        type="filepath", elem_id="playback")
                    gr.Examples(example_paths(), inputs=audio, label="Examples (one sentence, "
                                "said several ways: see assets/examples)")
                    with gr.Row():
                        analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    with gr.Accordion("Generation settings", open=False):
                        max_tokens = gr.Slider(8, 4096, value=REASON_TOKENS, step=8,
                                               label="max new tokens")
                        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05,
                                                label="temperature (0 = greedy)")
                        seed = gr.Number(value=-1, precision=0, label="seed (-1 = random)")
                with gr.Column(scale=3):
                    with gr.Row():
                        unit = gr.Radio(["Hz", "st"], value="Hz", label="pitch unit", scale=0)
                        view = gr.Radio(list(VIEWS), value="waveform", label="pitch over", scale=0,
                                        elem_id="view")
                    plot = gr.Plot(figures.placeholder_figure(), elem_id="plot",
                                   label="Pitch and intensity")
                    voice = gr.Radio(list(VOICE_TYPES), value="auto", elem_id="voice",
                                     label="voice type: whose pitch counts as low or high "
                                           "(auto: assumed from the clip where it is clear)")
                    summary = gr.Markdown("_Record or upload a clip to see how it was said._",
                                          elem_id="summary")
                    with gr.Accordion("Keep the measurements (Praat TextGrid and PitchTier, CSV, JSON)",
                                      open=False):
                        export_btn = gr.Button("Export", elem_id="export")
                        exported = gr.File(file_count="multiple", label="Files", elem_id="exported")
                    measurements = gr.JSON(label="Measurements", visible=False)
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Accordion("Reasoning", open=True):
                        reasoning = gr.Markdown(elem_id="reasoning")
                with gr.Column(scale=2):
                    label = gr.Label(num_top_classes=len(LABELS), label="Confidence for each emotion",
                                     elem_id="label")
                    claims = gr.Markdown(elem_id="claims")

        with gr.Tab("Prosody lab"):
            gr.Markdown("Change **how** the clip on the Analyse tab is said, hear it, see the "
                        "contours side by side, and ask the model about the changed clip.")
            with gr.Row():
                shift = gr.Slider(-12, 12, value=0, step=0.5, label="pitch shift (semitones)")
                prange = gr.Slider(0, 2.5, value=1, step=0.05, label="pitch range (x)")
                tilt = gr.Slider(-12, 12, value=0, step=0.5, label="rise / fall (semitones)")
                tempo = gr.Slider(0.5, 2.0, value=1, step=0.05, label="tempo (x)")
                gain = gr.Slider(-20, 12, value=0, step=1, label="loudness (dB)")
            resynth = gr.Button("Re-synthesise", variant="primary")
            with gr.Row():
                lab_audio = gr.Audio(label="Changed clip", type="filepath", interactive=False)
                lab_plot = gr.Plot(label="Original and changed pitch")
            lab_go = gr.Button("Ask the model about the changed clip")
            with gr.Row():
                lab_reasoning = gr.Markdown()
                lab_label = gr.Label(num_top_classes=len(LABELS), label="Changed clip: confidence")
                lab_claims = gr.Markdown()

        with gr.Tab("Compare"):
            gr.Markdown("Two clips — say, the same sentence said two ways — on one time-normalised axis.")
            with gr.Row():
                clip_a = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip A")
                clip_b = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip B")
            compare_btn = gr.Button("Compare", variant="primary")
            compare_plot = gr.Plot(label="Pitch, time-normalised")
            with gr.Row():
                summary_a, summary_b = gr.Markdown(), gr.Markdown()
            with gr.Row():
                reason_a_btn, reason_b_btn = gr.Button("Ask the model about A"), gr.Button("Ask the model about B")
            answer_a, answer_b = two_answers("A", "B")

        with gr.Tab("Imitate"):
            gr.Markdown("Pick a target — an example, an upload or a recording — then record your "
                        "imitation of **how** it is said. Both are aligned in time (a slow speaker "
                        "can imitate a fast one, a man a woman: pitch counts relative to each "
                        "voice's own middle) and scored on melody, pitch range, tempo, loudness "
                        "and pauses, each with what was measured and what to change.")
            with gr.Row():
                with gr.Column():
                    target = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                      label="Target", elem_id="target")
                    gr.Examples(example_paths(), inputs=target, label="Example targets")
                attempt = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                   label="Your imitation", elem_id="attempt")
            imitate_btn = gr.Button("Score my imitation", variant="primary", elem_id="imitate")
            imitate_plot = gr.Plot(label="Target and imitation, aligned in time", elem_id="imitate-plot")
            feedback = gr.Markdown(elem_id="feedback")
            with gr.Accordion("The scores as JSON (what /imitate returns)", open=False):
                scores = gr.JSON(label="scores", elem_id="scores")
            imitate_reason_btn = gr.Button("What emotion does each convey? (the model)")
            target_answer, attempt_answer = two_answers("Target", "Imitation")

        with gr.Tab("Class"):
            gr.Markdown(f"A whole class at once: upload the clips (several files, or one zip; up to "
                        f"{settings.batch_max_clips} clips and {settings.batch_max_mb} MiB). Each is "
                        "analysed; sort the table by any column, choose what the plot shows, "
                        "download the CSV. A tag in the file name (angry, happy, ... or RAVDESS's "
                        "numbering) colours the points.")
            batch_files = gr.File(file_count="multiple", label="Clips, or one zip of them",  # any
                                  elem_id="batch-files")  # type: what is not audio is listed, not refused
            with gr.Row():
                batch_voice = gr.Radio(list(VOICE_TYPES), value="auto", label="voice type (auto: per clip)")
                batch_model = gr.Checkbox(False, label="also ask the model for each clip's emotion "
                                                      "(slow; the Analyse tab's generation settings)")
                batch_btn = gr.Button("Analyse the class", variant="primary", elem_id="batch")
            with gr.Row():
                x_axis = gr.Dropdown(list(NUMERIC), value=figures.BATCH_AXES[0], label="x axis")
                y_axis = gr.Dropdown(list(NUMERIC), value=figures.BATCH_AXES[1], label="y axis")
                colour = gr.Dropdown(list(figures.BATCH_COLOURS), value=figures.BATCH_COLOURS[0],
                                     label="colour by")
            batch_plot = gr.Plot(label="One point per clip", elem_id="batch-plot")
            batch_table = gr.Dataframe(label="One row per file (sort from a column's ⋮ menu; failed files say why)",
                                       interactive=False, elem_id="batch-table")
            batch_failed = gr.Markdown(elem_id="batch-failed")
            batch_csv = gr.File(label="CSV", elem_id="batch-csv")
            batch_result = gr.State(None)

        # --- wiring ----------------------------------------------------------------------------
        # the clip input streams the microphone: while a take records, its changes are chunks,
        # which the live trace draws (app/live.py); the handlers below skip them then
        prosody_io = dict(inputs=[audio, unit, voice, view], outputs=[plot, summary, measurements])
        audio.change(h.prosody_unless_recording, api_name="prosody", concurrency_limit=None,
                     show_progress="hidden", **prosody_io)  # queued: its errors reach the page
        audio.change(h.playback, audio, playback, api_visibility="private", queue=False,
                     show_progress="hidden")
        audio.change(h.forget_answer, audio, [reasoning, label, claims], api_visibility="private",
                     queue=False, show_progress="hidden")
        audio.start_recording(h.live_start, None, plot, api_visibility="private", queue=False)
        audio.stream(h.live_trace, audio, plot, stream_every=LIVE_EVERY_S,
                     time_limit=int(settings.max_seconds), api_visibility="private",
                     concurrency_limit=None, show_progress="hidden")
        audio.stop_recording(h.live_done, None, audio, api_visibility="private")
        unit.change(h.prosody_unless_recording, api_visibility="private", **prosody_io)
        view.change(h.prosody_unless_recording, api_visibility="private", **prosody_io)
        voice.change(h.prosody_unless_recording, api_visibility="private", **prosody_io)
        settings_in = [max_tokens, temperature, seed]
        reason_event = analyse.click(h.prosody_unless_recording, api_visibility="private", **prosody_io).then(
            h.reason, [audio, *settings_in, voice], [reasoning, label, claims], api_name="reason",
            concurrency_limit=None)
        stop.click(h.stop, None, None, cancels=[reason_event], api_visibility="private", queue=False)
        export_btn.click(h.export, [audio, voice], exported, api_name="export")
        resynth.click(h.manipulate, [audio, shift, prange, tilt, tempo, gain], [lab_audio, lab_plot],
                      api_name="manipulate")
        lab_go.click(h.reason_changed, [lab_audio, *settings_in, audio, voice],
                     [lab_reasoning, lab_label, lab_claims], api_visibility="private",
                     concurrency_limit=None)
        compare_btn.click(h.compare, [clip_a, clip_b], [compare_plot, summary_a, summary_b],
                          api_name="compare")
        reason_a_btn.click(h.reason, [clip_a, *settings_in], answer_a, api_visibility="private",
                           concurrency_limit=None)
        reason_b_btn.click(h.reason, [clip_b, *settings_in], answer_b, api_visibility="private",
                           concurrency_limit=None)
        imitate_btn.click(h.imitate, [target, attempt], [imitate_plot, scores, feedback], api_name="imitate")
        imitate_reason_btn.click(h.reason, [target, *settings_in], target_answer, api_visibility="private",
                                 concurrency_limit=None).then(
            h.reason, [attempt, *settings_in], attempt_answer, api_visibility="private", concurrency_limit=None)
        batch_btn.click(h.batch, [batch_files, batch_voice, batch_model, max_tokens],
                        [batch_table, batch_plot, batch_csv, batch_result], api_name="batch",
                        concurrency_limit=2).then(
            h.batch_failures, batch_result, batch_failed, api_visibility="private")
        for control in (x_axis, y_axis, colour):
            control.change(h.batch_plot, [batch_result, x_axis, y_axis, colour], batch_plot,
                           api_visibility="private", queue=False)
    return demo


def two_answers(a: str, b: str) -> tuple[list, list]:
    """Two clips' answers side by side: the confidences, the reasoning below (the checked claims
    kept aside); each as the outputs of Handlers.reason."""
    with gr.Row():
        label_a = gr.Label(num_top_classes=len(LABELS), label=f"{a}: confidence")
        label_b = gr.Label(num_top_classes=len(LABELS), label=f"{b}: confidence")
    with gr.Row():
        reasoning_a, reasoning_b = gr.Markdown(), gr.Markdown()
    return [reasoning_a, label_a, gr.State("")], [reasoning_b, label_b, gr.State("")]


def launch(settings: Settings, *, block: bool = True):
    """Start the model loading (or ask the backend), build the page and serve it."""
    if settings.backend and not settings.no_model:
        service = RemoteService(settings.backend, settings.backend_key)
    else:
        service = ModelService(settings.model, settings.quant, settings.device,
                               queue_size=settings.queue_size, enabled=not settings.no_model,
                               compile=None if settings.compile else False,
                               warm_budgets=(REASON_TOKENS,), max_batch=settings.max_batch)
    demo = build(settings, service)
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                max_file_size=f"{settings.max_file_mb}mb",  # per file: --batch-max-mb bounds a batch
                allowed_paths=[str(EXAMPLE_DIR)],
                prevent_thread_lock=not block, css=CSS, theme=gr.themes.Soft(),
                app_kwargs={"middleware": [Middleware(LoopbackGuard, enabled=is_loopback(settings.host))]},
                footer_links=["api"], show_error=True)
    return demo, service
