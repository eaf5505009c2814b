"""The console's SVG charts and plain-words errors: what they draw and say, escaped."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from src.domains.console.charts import bar_chart, usage_chart
from src.domains.console.messages import plain_error
from src.domains.console.service import age_label
from src.domains.external_accounting.connections.schemas import UsageDayOut


def test_the_usage_chart_draws_a_bar_per_day_scaled_to_the_daily_limit() -> None:
    start = date(2026, 11, 18)
    days = [UsageDayOut(day=start + timedelta(n), calls=n * 500, bytes=0) for n in range(14)]
    svg = str(usage_chart(days, day_limit=5000, reserve=500))
    heights = [
        float(h)
        for h in re.findall(r'class="bar" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)
    ]
    assert len(heights) == 14
    assert heights[0] == 0
    # 6,500 calls peak above the 5,000 limit: the scale is the peak, the bars proportional.
    assert abs(heights[13] / heights[2] - 13 / 2) < 0.01
    assert "6,500 calls" in svg
    assert 'class="budget"' in svg
    assert 'class="reserve"' in svg


def test_a_bar_charts_names_are_escaped() -> None:
    svg = str(bar_chart([("<script>alert(1)</script>", 3, "3"), ("PAID", 0, "0")], label="a&b"))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert 'aria-label="a&amp;b"' in svg
    assert svg.count('class="bar"') == 2


def test_errors_in_plain_words_say_what_to_do() -> None:
    reauth = plain_error("reauthorisation_required", "HTTP 401")
    assert reauth is not None
    assert "Re-authorise" in reauth.todo
    resumes = datetime(2026, 12, 2, 0, 5, tzinfo=UTC)
    daily = plain_error("rate_limited_daily", None, resumes_at=resumes)
    assert daily is not None
    assert "00:05 UTC on 02 Dec" in daily.todo
    unknown = plain_error("something_new", "Xero said no.")
    assert unknown is not None
    assert unknown.what == "Xero said no."
    assert plain_error(None, None) is None


def test_ages_of_what_is_owed() -> None:
    assert [age_label(d) for d in (None, -3, 0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        "not yet due",
        "not yet due",
        "not yet due",
        "1–30 days",
        "1–30 days",
        "31–60 days",
        "31–60 days",
        "61–90 days",
        "61–90 days",
        "over 90 days",
        "over 90 days",
    ]
