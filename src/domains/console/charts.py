"""Server-rendered SVG charts: no JavaScript, no chart library. Every text is escaped (tenant,
contact and status names come from Xero and from customers)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from src.domains.external_accounting.connections.schemas import UsageDayOut

WIDTH = 640


def usage_chart(days: Sequence[UsageDayOut], *, day_limit: int, reserve: int) -> Markup:
    """Xero calls per UTC day (bars) against the daily budget (a line) and where syncs stop to
    leave the reserve to the customer's other apps (a dashed line)."""
    height, top, bottom, left = 150, 16, 28, 44
    plot_h = height - top - bottom
    peak = max([day_limit, *(d.calls for d in days)]) or 1
    step = (WIDTH - left - 8) / max(1, len(days))

    def y(calls: int) -> float:
        return top + plot_h - plot_h * calls / peak

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="Xero calls per day against the daily budget of {day_limit}">',
        f'<line x1="{left}" x2="{WIDTH - 8}" y1="{y(day_limit):.1f}" y2="{y(day_limit):.1f}" '
        'class="budget"/>',
        f'<text x="{left - 4}" y="{y(day_limit) + 4:.1f}" text-anchor="end" class="axis">'
        f"{day_limit:,}</text>",
        f'<line x1="{left}" x2="{WIDTH - 8}" y1="{y(day_limit - reserve):.1f}" '
        f'y2="{y(day_limit - reserve):.1f}" class="reserve"/>',
        f'<text x="{left - 4}" y="{top + plot_h + 4}" text-anchor="end" class="axis">0</text>',
    ]
    for n, day in enumerate(days):
        bar_h = max(0.0, top + plot_h - y(day.calls))
        if day.calls:
            bar_h = max(bar_h, 1.5)  # a day with calls is visible however small
        x = left + n * step + step * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{step * 0.7:.1f}" height="{bar_h:.1f}">'
            f"<title>{escape(day.day.isoformat())}: {day.calls:,} calls</title></rect>"
        )
        if day.calls:
            parts.append(
                f'<text class="value" x="{x + step * 0.35:.1f}" '
                f'y="{top + plot_h - bar_h - 3:.1f}" text-anchor="middle">{day.calls:,}</text>'
            )
        if (len(days) - 1 - n) % 2 == 0 or len(days) <= 8:
            parts.append(
                f'<text class="axis" x="{x + step * 0.35:.1f}" y="{height - 10}" '
                f'text-anchor="middle">{escape(day.day.strftime("%d %b"))}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(rows: Sequence[tuple[str, float, str]], *, label: str) -> Markup:
    """Horizontal bars: (name, value, the value as shown) per row."""
    width, row_h, left, right = 420, 24, 96, 130
    height = row_h * max(1, len(rows)) + 8
    peak = max([value for _, value, _ in rows] or [0]) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    for n, (name, value, shown) in enumerate(rows):
        y = 4 + n * row_h
        bar = (width - left - right) * value / peak
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 16}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{max(bar, 1 if value else 0):.1f}" '
            f'height="{row_h - 8}"><title>{escape(name)}: {escape(shown)}</title></rect>'
            f'<text class="value" x="{left + bar + 6:.1f}" y="{y + 16}">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
