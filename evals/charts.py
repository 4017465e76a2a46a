"""The accuracy-versus-cost chart, drawn as SVG on the server (no library, no CDN).

Cost is the x axis when any system costs money; on free local models every cost is
$0, so the x axis is then the mean latency, and the chart says so.
"""

from html import escape

WIDTH, HEIGHT = 880, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 330, 24, 56
LABEL_CHARS = 40
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"]


def _ticks(high: float, count: int = 5) -> list[float]:
    step = high / count
    return [step * i for i in range(count + 1)]


def scatter(summary) -> str:
    rows = [r for r in summary.rows if r.accuracy is not None]
    unpriced = any(r.cost_unknown for r in rows)
    by_cost = not unpriced and any(r.cost_per_item for r in rows)
    if by_cost:
        xs = [float(r.cost_per_item or 0) for r in rows]
        x_label, x_format = "Cost per item (USD)", (lambda v: f"${v:.4f}")
    else:
        # Never plot an unknown cost as $0: then latency is the axis, and it says why.
        why = "some costs are unknown" if unpriced else "every system here costs $0"
        xs = [(r.latency_mean_ms or 0) / 1000 for r in rows]
        x_label = f"Mean latency per item (s) — {why}"
        x_format = lambda v: f"{v:.1f}"  # noqa: E731
    x_high = max(xs + [0.0]) * 1.15 or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_at(v: float) -> float:
        return LEFT + plot_w * v / x_high

    def y_at(v: float) -> float:
        return TOP + plot_h * (1 - v)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(summary.metric)} versus {escape(x_label)}" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    for tick in _ticks(1.0):
        y = y_at(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#374151">'
            f"{tick * 100:.0f}%</text>"
        )
    for tick in _ticks(x_high):
        x = x_at(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
            f'stroke="#6b7280"/><text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle" '
            f'fill="#374151">{escape(x_format(tick))}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        f'stroke="#6b7280"/><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" '
        f'stroke="#6b7280"/>'
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 14}" text-anchor="middle" '
        f'fill="#111827">{escape(x_label)}</text>'
        f'<text transform="translate(16 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="#111827">{escape(summary.metric)} (95% CI)</text>'
    )
    for index, (row, x_value) in enumerate(zip(rows, xs, strict=True)):
        colour = COLOURS[index % len(COLOURS)]
        x, y = x_at(x_value), y_at(row.accuracy)
        if row.ci is not None:
            low, high = y_at(row.ci.low), y_at(row.ci.high)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{low:.1f}" y2="{high:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{low:.1f}" y2="{low:.1f}" '
                f'stroke="{colour}"/><line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{high:.1f}" '
                f'y2="{high:.1f}" stroke="{colour}"/>'
            )
        shape = (
            f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/>'
            if row.is_baseline
            else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>'
        )
        parts.append(shape)
        # The legend on the right names each colour (labels beside points collide).
        legend_y = TOP + 8 + index * 18
        label = row.label if len(row.label) <= LABEL_CHARS else row.label[: LABEL_CHARS - 1] + "…"
        parts.append(
            f'<circle cx="{WIDTH - RIGHT + 16}" cy="{legend_y - 4}" r="5" fill="{colour}"/>'
            f'<text x="{WIDTH - RIGHT + 26}" y="{legend_y}" fill="#111827">'
            f"{escape(label)} {100 * row.accuracy:.0f}%</text>"
        )
    if not rows:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#6b7280">'
            "No graded results yet.</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
