"""The feed page's chart: rows applied and rejected per run, as SVG drawn on the server.

No script and no inline style (the console's Content-Security-Policy allows neither): bars
are SVG shapes with presentation attributes and CSS classes from console.css. Only numbers
go into the drawing; each bar's title (its tooltip) is escaped by the template engine.
"""

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 160
BASELINE = 140
TOP = 10


def runs_chart(points: list[dict]) -> Markup:
    """A stacked bar per run (oldest left): applied (below) and rejected (above), scaled to
    the largest run; a failed run with no rows is a short mark on the baseline."""
    if not points:
        return Markup("")
    largest = max(point["applied"] + point["rejected"] for point in points) or 1
    slot = WIDTH / len(points)
    bar = max(slot * 0.7, 1.0)
    scale = (BASELINE - TOP) / largest
    shapes = []
    for index, point in enumerate(points):
        x = index * slot + (slot - bar) / 2
        applied, rejected = point["applied"] * scale, point["rejected"] * scale
        title = escape(
            f"run #{point['id']}: {point['applied']:,} applied, {point['rejected']:,} rejected ({point['status']})"
        )
        shapes.append(f"<g><title>{title}</title>")
        shapes.append(
            f'<rect class="applied" x="{x:.1f}" y="{BASELINE - applied:.1f}" width="{bar:.1f}" height="{applied:.1f}"/>'
        )
        shapes.append(
            f'<rect class="rejected" x="{x:.1f}" y="{BASELINE - applied - rejected:.1f}" width="{bar:.1f}" '
            f'height="{rejected:.1f}"/>'
        )
        if point["status"] == "failed":
            shapes.append(f'<rect class="failed" x="{x:.1f}" y="{BASELINE + 3}" width="{bar:.1f}" height="4"/>')
        shapes.append("</g>")
    axis = f'<line class="axis" x1="0" y1="{BASELINE}" x2="{WIDTH}" y2="{BASELINE}"/>'
    label = f'<text class="label" x="0" y="{TOP - 1}">{largest:,} rows</text>'
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Rows applied and rejected, last {len(points)} runs">{label}{axis}{"".join(shapes)}</svg>'
    )
