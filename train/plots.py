"""Confusion matrices for evaluation reports: a PNG (Pillow: no browser or kaleido needed) and a
self-contained interactive HTML (plotly, its JavaScript inlined so it opens offline)."""

from __future__ import annotations

from pathlib import Path

CELL, MARGIN = 56, 120  # pixels


def confusion_png(confusion: dict, path: Path) -> None:
    """Rows gold, columns predicted; each cell shaded by its share of the row, with the count."""
    from PIL import Image, ImageDraw

    rows, cols, m = confusion["rows"], confusion["columns"], confusion["matrix"]
    img = Image.new("RGB", (MARGIN + CELL * len(cols) + 10, MARGIN + CELL * len(rows) + 10), "white")
    draw = ImageDraw.Draw(img)
    for j, c in enumerate(cols):
        draw.text((MARGIN + j * CELL + 4, MARGIN - 18), c[:8], fill="black")
    for i, r in enumerate(rows):
        total = sum(m[i]) or 1
        draw.text((8, MARGIN + i * CELL + CELL // 2 - 6), r[:14], fill="black")
        for j in range(len(cols)):
            share = m[i][j] / total
            shade = int(255 - 200 * share)
            x0, y0 = MARGIN + j * CELL, MARGIN + i * CELL
            draw.rectangle([x0, y0, x0 + CELL - 2, y0 + CELL - 2], fill=(shade, shade, 255))
            draw.text((x0 + CELL // 2 - 8, y0 + CELL // 2 - 6), str(m[i][j]),
                      fill="white" if share > 0.6 else "black")
    draw.text((MARGIN, 12), "confusion matrix (rows: gold, columns: predicted)", fill="black")
    img.save(path)


def confusion_html(confusion: dict, path: Path) -> None:
    import plotly.graph_objects as go

    m = confusion["matrix"]
    shares = [[v / (sum(row) or 1) for v in row] for row in m]
    fig = go.Figure(go.Heatmap(z=shares, x=confusion["columns"], y=confusion["rows"], text=m,
                               texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="gold %{y}<br>predicted %{x}<br>%{text} clips"
                                             "<extra></extra>"))
    fig.update_layout(title="Confusion matrix (share of each gold class)",
                      xaxis_title="predicted", yaxis_title="gold", yaxis_autorange="reversed")
    fig.write_html(path, include_plotlyjs=True)
