"""Plotly figures of measured prosody: what a teacher projects and a researcher hovers over.

- `prosody_figure`: the waveform, the pitch contour over it (unvoiced gaps left empty) with the
  intonation and pitch range annotated, intensity on its own axis below, pauses shaded.
- `overlay_figure`: several clips' pitch contours on one axis (real or normalised time), for the
  prosody lab and the compare view.
- `live_figure`: pitch and intensity growing across the plot while the microphone records.
- `imitation_figure`: a target and its imitation aligned in time (DTW), pitch and intensity.
- `batch_figure` / `batch_table`: a class's clips, one point / one row each.
Every trace carries the measured values (no smoothing beyond Praat's), so the figure is data.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from engine.audio import Clip
from engine.prosody import ProsodyReport

PITCH_COLOUR, INTENSITY_COLOUR, WAVE_COLOUR = "#d6336c", "#1c7ed6", "rgba(120,120,120,0.35)"
PALETTE = ["#d6336c", "#1c7ed6", "#2f9e44", "#f59f00"]
TEMPLATE: dict = {}  # plotly's "plotly_white", expanded once (plotly.js needs the dict itself)


def prosody_figure(report: ProsodyReport, clip: Clip | None = None, title: str | None = None,
                   unit: str = "Hz", view: str = "waveform") -> go.Figure:
    """Pitch (Hz, or semitones re the median with unit="st") over the waveform, or with
    view="spectrogram" over a wideband spectrogram (Praat's speech defaults: 5 ms window,
    0-5 kHz, 50 dB, darker is louder) on its own axis; intensity below."""
    c = report.contours
    pitch = c.f0_st if unit == "st" else c.f0_hz
    data = []
    spectral = view == "spectrogram" and clip is not None
    if spectral:
        from engine.prosody.analysis import spectrogram

        times, freqs, level = spectrogram(clip)
        data.append({"type": "heatmap", "name": "spectrogram", "x": times, "y": freqs, "z": level,
                     "zmin": 0, "zmax": 50, "colorscale": "Greys", "showscale": False,
                     "hoverinfo": "skip", "xaxis": "x", "yaxis": "y3"})
    elif clip is not None:
        t, low, high = _envelope(clip)
        data.append({"type": "scatter", "name": "waveform", "x": np.concatenate([t, t[::-1]]),
                     "y": np.concatenate([high, low[::-1]]), "fill": "toself",
                     "fillcolor": WAVE_COLOUR, "line": {"width": 0}, "hoverinfo": "skip",
                     "showlegend": False, "xaxis": "x", "yaxis": "y3"})
    data.append({"type": "scatter", "name": "pitch", "x": c.time_s, "y": _gaps(pitch),
                 "mode": "lines+markers", "line": {"color": PITCH_COLOUR, "width": 2.5},
                 "marker": {"size": 3}, "connectgaps": False, "xaxis": "x", "yaxis": "y",
                 "customdata": list(zip(_gaps(c.f0_hz), _gaps(c.f0_st))),
                 "hovertemplate": "%{x:.2f} s<br>%{customdata[0]:.0f} Hz "
                                  "(%{customdata[1]:+.1f} st)<extra></extra>"})
    data.append({"type": "scatter", "name": "intensity", "x": c.time_s, "y": c.intensity_db,
                 "mode": "lines", "line": {"color": INTENSITY_COLOUR, "width": 1.5},
                 "xaxis": "x", "yaxis": "y2",
                 "hovertemplate": "%{x:.2f} s<br>%{y:.1f} dBFS<extra></extra>"})
    pitch_axis = {"domain": [0.36, 1.0], "anchor": "x",
                  "title": {"text": "pitch (Hz)" if unit == "Hz" else "pitch (st re median)"}}
    if unit == "Hz" and report.pitch.median_hz:
        pitch_axis["range"] = [max(report.pitch.p5_hz / 1.35, 40), report.pitch.p95_hz * 1.25]
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": a, "x1": b, "y0": 0, "y1": 1,
               "fillcolor": "rgba(255,193,7,0.18)", "line": {"width": 0}, "layer": "below"}
              for a, b in report.rate.pauses]
    notes = [{"x": (a + b) / 2, "y": 1.0, "xref": "x", "yref": "paper", "text": "pause",
              "showarrow": False, "yanchor": "bottom", "font": {"size": 10}}
             for a, b in report.rate.pauses]
    layout = {"title": {"text": title or _headline(report), "font": {"size": 15}},
              "height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
              "hovermode": "x unified", "shapes": shapes, "annotations": notes,
              "legend": {"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right",
                         "yanchor": "bottom"},
              "xaxis": {"anchor": "y2", "title": {"text": "time (s)"}},
              "yaxis": pitch_axis,
              "yaxis2": {"domain": [0.0, 0.28], "anchor": "x", "title": {"text": "intensity (dBFS)"}},
              "yaxis3": {"overlaying": "y", "visible": False, "range": [-1.05, 1.05]}}
    if spectral:  # the spectrogram's frequency axis on the left, the pitch on the right over it
        layout["yaxis3"] = {"domain": [0.36, 1.0], "anchor": "x", "range": [0, float(freqs[-1])],
                            "title": {"text": "frequency (Hz)"}}
        layout["yaxis"] = {**pitch_axis, "overlaying": "y3", "side": "right", "showgrid": False}
    return _figure(data, layout)


def overlay_figure(items: list[tuple[str, ProsodyReport]], normalise_time: bool = False,
                   unit: str = "Hz") -> go.Figure:
    """Pitch contours of several clips on one axis; `normalise_time` maps each clip's speech to
    0..1 so that the same sentence said at two speeds lines up."""
    data = []
    for i, (name, report) in enumerate(items):
        c = report.contours
        t, y = c.time_s, (c.f0_st if unit == "st" else c.f0_hz)
        if normalise_time and c.speech.any():  # the speech, from its first to its last frame
            idx = np.flatnonzero(c.speech)
            span = slice(idx[0], idx[-1] + 1)
            t0, t1 = t[idx[0]], t[idx[-1]]
            t, y = (t[span] - t0) / max(t1 - t0, 1e-6), y[span]
        data.append({"type": "scatter", "x": t, "y": _gaps(y), "mode": "lines",
                     "name": f"{name}: {_headline(report)}", "connectgaps": False,
                     "line": {"color": PALETTE[i % len(PALETTE)], "width": 2.5},
                     "hovertemplate": f"{name}<br>%{{x:.2f}}<br>%{{y:.1f}} {unit}<extra></extra>"})
    xaxis = {"title": {"text": "time (normalised)" if normalise_time else "time (s)"}}
    if normalise_time:
        xaxis["range"] = [-0.05, 1.05]
    return _figure(data, {"height": 360, "xaxis": xaxis,
                          "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
                          "yaxis": {"title": {"text": "pitch (Hz)" if unit == "Hz" else "pitch (st)"}},
                          "legend": {"orientation": "h", "y": -0.25}})


def placeholder_figure() -> go.Figure:
    """Empty axes shown before any clip (it also makes the browser load plotly.js up front)."""
    return _figure([], {"height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                        "xaxis": {"title": {"text": "time (s)"}, "range": [0, 3]},
                        "yaxis": {"title": {"text": "pitch (Hz)"}, "range": [50, 400]},
                        "annotations": [{"text": "the pitch contour appears here", "showarrow": False,
                                         "x": 1.5, "y": 225, "font": {"size": 14, "color": "#888"}}]})


def live_figure(times_s: np.ndarray, f0_hz: np.ndarray, level_dbfs: np.ndarray,
                window_s: float, full_s: float | None = None) -> go.Figure:
    """While recording: the pitch growing across the plot, intensity below, over `window_s`
    seconds, then scrolling (prosody only: the emotion needs the whole take); `full_s`: the take
    reached this limit and grows no more."""
    voiced = f0_hz[np.isfinite(f0_hz)]
    now = f"pitch now {voiced[-1]:.0f} Hz" if voiced.size else "no voice yet"
    if full_s is not None:
        now = f"the {full_s:g} s limit is reached: press Stop"
    end = float(times_s[-1]) if len(times_s) else 0.0
    span = [max(0.0, end - window_s), max(window_s, end)]
    data = [{"type": "scatter", "x": times_s, "y": _gaps(f0_hz), "mode": "lines+markers",
             "line": {"color": PITCH_COLOUR, "width": 3}, "marker": {"size": 4},
             "connectgaps": False, "name": "pitch", "xaxis": "x", "yaxis": "y"},
            {"type": "scatter", "x": times_s, "y": level_dbfs, "mode": "lines", "name": "intensity",
             "line": {"color": INTENSITY_COLOUR, "width": 1.5}, "xaxis": "x", "yaxis": "y2"}]
    return _figure(data, {"title": {"text": f"recording: {now} · the full analysis appears when you stop",
                                    "font": {"size": 15}},
                          "height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                          "showlegend": False, "uirevision": "live",
                          "xaxis": {"anchor": "y2", "title": {"text": "time (s)"}, "range": span},
                          "yaxis": {"domain": [0.36, 1.0], "anchor": "x", "range": [50, 450],
                                    "title": {"text": "pitch (Hz)"}},
                          "yaxis2": {"domain": [0.0, 0.28], "anchor": "x", "range": [-80, 0],
                                     "title": {"text": "level (dBFS)"}}})


def imitation_figure(result) -> go.Figure:
    """The target and the imitation on the target's time axis (the DTW path): pitch in semitones
    re each speaker's own median (a man can imitate a woman), intensity in dB re each clip's
    own speech level below."""
    a = result.aligned()
    data = []
    for who, colour in (("target", PALETTE[0]), ("attempt", PALETTE[1])):
        name = "target" if who == "target" else "your imitation"
        data.append({"type": "scatter", "x": a["time_s"], "y": _gaps(a[f"{who}_st"]), "mode": "lines",
                     "name": name, "connectgaps": False, "line": {"color": colour, "width": 2.5},
                     "xaxis": "x", "yaxis": "y",
                     "hovertemplate": f"{name}<br>%{{x:.2f}} s<br>%{{y:+.1f}} st<extra></extra>"})
        data.append({"type": "scatter", "x": a["time_s"], "y": a[f"{who}_db"], "mode": "lines",
                     "name": f"{name}: intensity", "showlegend": False,
                     "line": {"color": colour, "width": 1.2}, "xaxis": "x", "yaxis": "y2",
                     "hovertemplate": f"{name}<br>%{{x:.2f}} s<br>%{{y:+.1f}} dB<extra></extra>"})
    overall = "–" if result.overall is None else f"{result.overall:.0f}"
    return _figure(data, {"title": {"text": f"imitation, aligned in time · overall {overall} / 100",
                                    "font": {"size": 15}},
                          "height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                          "hovermode": "x unified",
                          "legend": {"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right",
                                     "yanchor": "bottom"},
                          "xaxis": {"anchor": "y2", "title": {"text": "target time (s)"}},
                          "yaxis": {"domain": [0.36, 1.0], "anchor": "x",
                                    "title": {"text": "pitch (st re own median)"}},
                          "yaxis2": {"domain": [0.0, 0.28], "anchor": "x",
                                     "title": {"text": "intensity (dB re own)"}}})


BATCH_AXES = ("pitch_median_hz", "articulation_rate_sps")  # the scatter plot's first axes
BATCH_COLOURS = ("tag", "emotion", "voice_type", "intonation")  # columns a plot may be coloured by


def batch_figure(rows: list[dict], x: str = BATCH_AXES[0], y: str = BATCH_AXES[1],
                 colour: str = BATCH_COLOURS[0]) -> go.Figure:
    """One point per clip, at two measures of the teacher's choosing, coloured by a column
    (clips without a value for it are "none"); hover names the file."""
    from engine.batch import NUMERIC

    if x not in NUMERIC or y not in NUMERIC or colour not in BATCH_COLOURS:
        raise ValueError(f"axes come from {', '.join(NUMERIC)}; colours from {', '.join(BATCH_COLOURS)}")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get(x) is not None and r.get(y) is not None:
            groups.setdefault(str(r.get(colour) or "none"), []).append(r)
    data = [{"type": "scatter", "mode": "markers", "name": name, "x": [r[x] for r in group],
             "y": [r[y] for r in group], "text": [r["file"] for r in group],
             "marker": {"size": 10, "color": PALETTE[i % len(PALETTE)] if i < len(PALETTE) else None},
             "hovertemplate": f"%{{text}}<br>{x} %{{x}}<br>{y} %{{y}}<extra>{name}</extra>"}
            for i, (name, group) in enumerate(sorted(groups.items()))]
    return _figure(data, {"title": {"text": f"{len(rows)} clips · colour: {colour}", "font": {"size": 15}},
                          "height": 430, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
                          "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}},
                          "legend": {"title": {"text": colour}}})


def batch_table(rows: list[dict]):
    """The rows as a table (one column per measure, named with its unit)."""
    import pandas as pd

    from engine.batch import COLUMNS

    return pd.DataFrame(rows, columns=list(COLUMNS))


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """A Figure from plain dicts without plotly's per-property validation (~2 ms instead of
    ~50 ms per figure: the page must update within a blink of a clip arriving)."""
    if not TEMPLATE:
        import plotly.io as pio

        TEMPLATE.update(pio.templates["plotly_white"].to_plotly_json())
    return go.Figure({"data": data, "layout": {**layout, "template": TEMPLATE}}, _validate=False)


def _headline(report: ProsodyReport) -> str:
    p, i = report.pitch, report.intonation
    if p.median_hz is None:
        return "no voiced speech"
    return (f"intonation {i.label.replace('_', ' ')} · median {p.median_hz:.0f} Hz · "
            f"range {p.range_st:.1f} st")


def _gaps(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 2) for v in values]


def _envelope(clip: Clip, points: int = 800):
    x = clip.samples
    n = max(len(x) // points, 1)
    frames = x[: len(x) // n * n].reshape(-1, n)
    t = (np.arange(len(frames)) + 0.5) * n / clip.sample_rate_hz
    return t, frames.min(axis=1), frames.max(axis=1)
