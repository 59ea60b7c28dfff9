"""Plotly figures of measured prosody: what a teacher projects and a researcher hovers over.

- `prosody_figure`: the waveform, the pitch contour over it (unvoiced gaps left empty) with the
  intonation and pitch range annotated, intensity on its own axis below, pauses shaded.
- `overlay_figure`: several clips' pitch contours on one axis (real or normalised time), for the
  prosody lab and the compare view.
- `live_figure`: the pitch of the last few seconds, for the microphone tuner.
Every trace carries the measured values (no smoothing beyond Praat's), so the figure is data.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.audio import Clip
from engine.prosody import ProsodyReport

PITCH_COLOUR, INTENSITY_COLOUR, WAVE_COLOUR = "#d6336c", "#1c7ed6", "rgba(120,120,120,0.35)"
PALETTE = ["#d6336c", "#1c7ed6", "#2f9e44", "#f59f00"]


def prosody_figure(report: ProsodyReport, clip: Clip | None = None, title: str | None = None,
                   unit: str = "Hz") -> go.Figure:
    """Pitch (Hz, or semitones re the median with unit="st") over the waveform, intensity below."""
    c = report.contours
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.06, specs=[[{"secondary_y": True}], [{}]])
    if clip is not None:
        t, low, high = _envelope(clip)
        fig.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]), y=np.concatenate([high, low[::-1]]),
                                 fill="toself", fillcolor=WAVE_COLOUR, line={"width": 0},
                                 name="waveform", hoverinfo="skip", showlegend=False),
                      row=1, col=1, secondary_y=True)
    pitch = c.f0_st if unit == "st" else c.f0_hz
    fig.add_trace(go.Scatter(
        x=c.time_s, y=_gaps(pitch), mode="lines+markers", name="pitch",
        line={"color": PITCH_COLOUR, "width": 2.5}, marker={"size": 3}, connectgaps=False,
        customdata=np.stack([_gaps(c.f0_hz), _gaps(c.f0_st)], axis=1),
        hovertemplate="%{x:.2f} s<br>%{customdata[0]:.0f} Hz (%{customdata[1]:+.1f} st)<extra></extra>"),
        row=1, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(
        x=c.time_s, y=c.intensity_db, mode="lines", name="intensity",
        line={"color": INTENSITY_COLOUR, "width": 1.5},
        hovertemplate="%{x:.2f} s<br>%{y:.1f} dBFS<extra></extra>"), row=2, col=1)
    for start, end in report.rate.pauses:
        fig.add_vrect(x0=start, x1=end, fillcolor="rgba(255,193,7,0.18)", line_width=0,
                      annotation_text="pause", annotation_position="top left", row="all", col=1)
    fig.update_yaxes(title_text="pitch (Hz)" if unit == "Hz" else "pitch (st re median)",
                     row=1, col=1, secondary_y=False)
    fig.update_yaxes(visible=False, row=1, col=1, secondary_y=True)
    if unit == "Hz" and report.pitch.median_hz:
        lo, hi = report.pitch.p5_hz, report.pitch.p95_hz
        fig.update_yaxes(range=[max(lo / 1.35, 40), hi * 1.25], row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="intensity (dBFS)", row=2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(title={"text": title or _headline(report), "font": {"size": 15}},
                      height=430, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      hovermode="x unified", legend={"orientation": "h", "y": 1.02, "x": 1,
                                                     "xanchor": "right", "yanchor": "bottom"},
                      template="plotly_white")
    return fig


def overlay_figure(items: list[tuple[str, ProsodyReport]], normalise_time: bool = False,
                   unit: str = "Hz") -> go.Figure:
    """Pitch contours of several clips on one axis; `normalise_time` maps each clip's speech to
    0..1 so that the same sentence said at two speeds lines up."""
    fig = go.Figure()
    for i, (name, report) in enumerate(items):
        c = report.contours
        t, y = c.time_s, (c.f0_st if unit == "st" else c.f0_hz)
        if normalise_time and c.speech.any():  # the speech, from its first to its last frame
            idx = np.flatnonzero(c.speech)
            span = slice(idx[0], idx[-1] + 1)
            t0, t1 = t[idx[0]], t[idx[-1]]
            t, y = (t[span] - t0) / max(t1 - t0, 1e-6), y[span]
        fig.add_trace(go.Scatter(x=t, y=_gaps(y), mode="lines", name=f"{name}: {_headline(report)}",
                                 line={"color": PALETTE[i % len(PALETTE)], "width": 2.5},
                                 connectgaps=False,
                                 hovertemplate=f"{name}<br>%{{x:.2f}}<br>%{{y:.1f}} {unit}<extra></extra>"))
    fig.update_layout(height=360, template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 40},
                      xaxis_title="time (normalised)" if normalise_time else "time (s)",
                      yaxis_title="pitch (Hz)" if unit == "Hz" else "pitch (st)",
                      legend={"orientation": "h", "y": -0.25})
    if normalise_time:
        fig.update_xaxes(range=[-0.05, 1.05])
    return fig


def live_figure(times_s: np.ndarray, f0_hz: np.ndarray) -> go.Figure:
    """The tuner: pitch over the last seconds of the microphone (prosody only, no emotion)."""
    fig = go.Figure(go.Scatter(x=times_s, y=_gaps(f0_hz), mode="lines+markers",
                               line={"color": PITCH_COLOUR, "width": 3}, marker={"size": 4},
                               connectgaps=False, name="pitch"))
    voiced = f0_hz[np.isfinite(f0_hz)]
    now = f"{voiced[-1]:.0f} Hz" if voiced.size else "no voice"
    fig.update_layout(title=f"live pitch: {now} (prosody only: the emotion needs the whole clip)",
                      height=260, template="plotly_white", margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      xaxis_title="time (s)", yaxis_title="Hz", yaxis_range=[50, 450])
    return fig


def _headline(report: ProsodyReport) -> str:
    p, i = report.pitch, report.intonation
    if p.median_hz is None:
        return "no voiced speech"
    return (f"{i.label.replace('_', ' ')} · median {p.median_hz:.0f} Hz · range "
            f"{p.range_st:.1f} st")


def _gaps(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 2) for v in values]


def _envelope(clip: Clip, points: int = 800):
    x = clip.samples
    n = max(len(x) // points, 1)
    frames = x[: len(x) // n * n].reshape(-1, n)
    t = (np.arange(len(frames)) + 0.5) * n / clip.sample_rate_hz
    return t, frames.min(axis=1), frames.max(axis=1)
