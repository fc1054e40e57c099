"""``rmcore report``: one self-contained HTML file with KPIs, monthly trends and skill flows.

Nothing in the file is fetched: styles are inline, charts are inline SVG, there is no
script. The markup is well-formed XML (void elements closed, only XML entities), so it
opens in any browser and in any XML tool, and it prints on A4.

Each month's point is :func:`rmcore.kpis.collect_kpis` as of the end of that month's last
day, exactly what ``rmcore kpi --as-of YYYY-MM-DD`` shows for that day; a month cut short
by ``--to`` is taken as of ``--to``. "Sessions per month" is the difference of the
``sessions`` KPI between one month's point and the one before.
"""

from __future__ import annotations

import calendar
import re
import sqlite3
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from html import escape
from typing import TYPE_CHECKING

from attrs import frozen

from rmcore.kpis import Kpi, collect_kpis
from rmcore.when import OCCURRED_FORMAT, WhenError, end_of_day, to_utc

if TYPE_CHECKING:
    from rmcore.engine import Engine

MAX_MONTHS = 120
TOP_SKILLS = 10
SVG_NS = "http://www.w3.org/2000/svg"


@frozen
class Trend:
    """One monthly chart: which KPI it plots and how its axis is scaled."""

    key: str
    title: str
    kind: str  # "bar" or "line"
    unit: str  # "count", "fraction" or "rating"


TRENDS: tuple[Trend, ...] = (
    Trend("sessions_per_month", "Sessions per month", "bar", "count"),
    Trend("active_pairs", "Active pairs", "line", "count"),
    Trend("match_rate", "Match rate", "line", "fraction"),
    Trend("avg_rating", "Average rating", "line", "rating"),
    Trend("engaged_pairs_30d", "Engaged pairs (session in the last 30 days)", "line", "fraction"),
)


@frozen
class MonthPoint:
    """The KPIs at the end of one month (or at ``--to`` for a month cut short)."""

    month: str
    as_of: str
    kpis: dict[str, int | float | None]

    def value(self, name: str) -> int | float | None:
        """One KPI's value, None when no plugin reported it."""
        return self.kpis.get(name)


@frozen
class Period:
    """The months a report covers: from the start of ``start``'s month to ``end``."""

    start: str
    end: str

    def months(self) -> list[tuple[str, str]]:
        """``(YYYY-MM, as_of)`` for every month; as_of is the month's last second or ``end``."""
        year, month = int(self.start[:4]), int(self.start[5:7])
        result = []
        while f"{year:04d}-{month:02d}" <= self.end[:7]:
            last_day = calendar.monthrange(year, month)[1]
            month_end = f"{year:04d}-{month:02d}-{last_day:02d}T23:59:59Z"
            result.append((f"{year:04d}-{month:02d}", min(month_end, self.end)))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return result

    def before(self) -> str:
        """The last second before the first month, for the first month's session count."""
        first = datetime.strptime(self.start[:7] + "-01", "%Y-%m-%d")
        return (first - timedelta(seconds=1)).strftime(OCCURRED_FORMAT)


def period(
    conn: sqlite3.Connection, program: str, start: str | None, end: str | None, now: str
) -> Period:
    """The report's period from ``--from`` / ``--to`` (defaults: the program's first day, now)."""
    last = end_of_day(end) if end else now
    if start:
        first = to_utc(start).strftime(OCCURRED_FORMAT)
    else:
        row = conn.execute(
            "SELECT min(joined_at) FROM people WHERE program = ?", (program,)
        ).fetchone()
        first = min(row[0], last) if row[0] else last
    if first > last:
        raise WhenError(f"--from {first[:10]} is after --to {last[:10]}")
    chosen = Period(first, last)
    if len(chosen.months()) > MAX_MONTHS:
        raise WhenError(f"a report covers at most {MAX_MONTHS} months; narrow --from / --to")
    return chosen


def kpi_values(records: Sequence[Kpi]) -> dict[str, int | float | None]:
    """Program-wide KPI values by name."""
    return {k.name: k.value for k in records if k.group is None}


def monthly_points(
    engine: Engine, program: str, chosen: Period
) -> tuple[list[MonthPoint], list[Kpi]]:
    """``collect_kpis`` at each month's end (with the sessions held in each month).

    Also returns the last month's records: they are the KPIs as of ``chosen.end``.
    """
    previous = kpi_values(collect_kpis(engine, program, chosen.before())).get("sessions")
    points: list[MonthPoint] = []
    records: list[Kpi] = []
    for month, as_of in chosen.months():
        records = collect_kpis(engine, program, as_of)
        values = kpi_values(records)
        sessions = values.get("sessions")
        values["sessions_per_month"] = (
            None if sessions is None or previous is None else sessions - previous
        )
        previous = sessions
        points.append(MonthPoint(month, as_of, values))
    return points, records


def skill_flows(
    conn: sqlite3.Connection, program: str, start: str, end: str, limit: int = TOP_SKILLS
) -> dict[str, list[tuple[str, int]]]:
    """The skills most often reported gained, per direction, as ``(skill, pairs)``.

    ``to_mentee`` counts skills a pair's mentee reported gaining (they flowed from the
    mentor), ``to_mentor`` the reverse; each pair counts once per skill. Skills are
    compared case-insensitively with hyphens and spaces normalised, as the KPIs do, and
    shown in their most frequent spelling.
    """
    rows = conn.execute(
        "SELECT DISTINCT CASE WHEN f.by_person = q.mentee_id THEN 'to_mentee'"
        " ELSE 'to_mentor' END, f.pair_id, j.value"
        " FROM feedback f JOIN pairs q ON q.program = f.program AND q.pair_id = f.pair_id,"
        " json_each(f.skills_gained) j"
        " WHERE f.program = ? AND f.given_at >= ? AND f.given_at <= ?",
        (program, start, end),
    )
    pairs: dict[str, dict[str, set[str]]] = {
        "to_mentee": defaultdict(set),
        "to_mentor": defaultdict(set),
    }
    spellings: dict[str, Counter] = defaultdict(Counter)
    for direction, pair_id, skill in rows:
        key = _skill_key(str(skill))
        if key:
            pairs[direction][key].add(pair_id)
            spellings[key][str(skill)] += 1
    result = {}
    for direction, by_key in pairs.items():
        ranked = sorted(by_key.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
        result[direction] = [(spellings[key].most_common(1)[0][0], len(ids)) for key, ids in ranked]
    return result


_SEPARATORS = re.compile(r"[\s\-_\u2010-\u2015\u2212]+")


def _skill_key(skill: str) -> str:
    # The normalisation the KPI and matching plugins use (the core cannot import them).
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", skill).casefold()).strip()


def build_report(
    engine: Engine,
    program: str,
    *,
    start: str | None = None,
    end: str | None = None,
    now: str | None = None,
) -> str:
    """The HTML report of ``program`` for the months from ``start`` to ``end``."""
    now = now or datetime.now(timezone.utc).strftime(OCCURRED_FORMAT)
    chosen = period(engine.conn, program, start, end, now)
    points, kpis = monthly_points(engine, program, chosen)
    flows = skill_flows(engine.conn, program, chosen.start, chosen.end)
    return render(program, chosen, kpis, points, flows, now)


# ---------------------------------------------------------------- rendering

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2933; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d9e2ec; }
h3 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
p.meta { color: #52606d; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e4e7eb;
  vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #7b8794; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr));
  gap: 1rem 2rem; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
svg { width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #52606d; }
.flows { display: grid; grid-template-columns: 1fr 1fr; gap: 2rem; }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  h2 { break-after: avoid; }
  figure, table, .flows > div { break-inside: avoid; }
  .charts { grid-template-columns: 1fr 1fr; }
}
"""

COLOURS = {
    "sessions_per_month": "#3e7cb1",
    "active_pairs": "#2f855a",
    "match_rate": "#805ad5",
    "avg_rating": "#c05621",
    "engaged_pairs_30d": "#0f7c8c",
}


def render(
    program: str,
    chosen: Period,
    kpis: Sequence[Kpi],
    points: Sequence[MonthPoint],
    flows: dict[str, list[tuple[str, int]]],
    now: str,
) -> str:
    """The report document as text."""
    first, last = chosen.start[:10], chosen.end[:10]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{_e(program)}: mentoring program report {first} to {last}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>Program {_e(program)}</h1>",
        f'<p class="meta">Report for {first} to {last} &#183; KPIs as of {_e(chosen.end)}'
        f" &#183; generated {_e(now)}</p>",
        "<h2>KPIs</h2>",
        _kpi_table(kpis),
        "<h2>Monthly trends</h2>",
        '<p class="meta">Each point is the KPI as of the end of the month\'s last day '
        "(<code>rmcore kpi --as-of</code> that day); sessions per month is the change in "
        "sessions held since the month before.</p>",
        '<div class="charts">',
        *(_chart(trend, points) for trend in TRENDS),
        "</div>",
        _monthly_table(points),
        "<h2>Skills flowing most</h2>",
        '<p class="meta">Skills reported gained in feedback given in the period; '
        "the number of pairs in which each was reported.</p>",
        '<div class="flows">',
        _flow_table("From mentors to mentees", flows.get("to_mentee", [])),
        _flow_table("From mentees to mentors", flows.get("to_mentor", [])),
        "</div>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def format_value(value: int | float | None, unit: str) -> str:
    """A KPI value for reading: fractions as percentages, None as a dash."""
    if value is None:
        return "&#8212;"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def _kpi_table(kpis: Sequence[Kpi]) -> str:
    rows = [
        "<tr>"
        f"<td><code>{_e(k.name)}</code></td>"
        f'<td class="num" data-kpi="{_e(k.name)}" data-value="{_raw(k.value)}">'
        f"{format_value(k.value, k.unit)}</td>"
        f"<td>{_e(k.unit)}</td><td>{_e(k.description)}</td>"
        f'<td class="muted">{_e(k.plugin or "")}</td>'
        "</tr>"
        for k in kpis
        if k.group is None
    ]
    if not rows:
        return '<p class="muted">No KPI plugin is installed.</p>'
    return (
        '<table class="kpis"><thead><tr><th>KPI</th><th class="num">Value</th><th>Unit</th>'
        "<th>What it measures</th><th>Plugin</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _raw(value: int | float | None) -> str:
    return "" if value is None else repr(value)


def _monthly_table(points: Sequence[MonthPoint]) -> str:
    head = "".join(f'<th class="num">{_e(t.title)}</th>' for t in TRENDS)
    body = []
    for point in points:
        cells = "".join(
            f'<td class="num">{format_value(point.value(t.key), _unit_of(t))}</td>' for t in TRENDS
        )
        body.append(
            f'<tr data-month="{point.month}"><td>{point.month}</td>'
            f'<td class="muted">{_e(point.as_of[:10])}</td>{cells}</tr>'
        )
    return (
        '<h3>Monthly figures</h3><table class="monthly"><thead><tr><th>Month</th>'
        f"<th>As of</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _unit_of(trend: Trend) -> str:
    return "fraction" if trend.unit == "fraction" else ""


def _flow_table(title: str, flows: Sequence[tuple[str, int]]) -> str:
    if not flows:
        return f'<div><h3>{_e(title)}</h3><p class="muted">No skills reported yet.</p></div>'
    rows = "".join(
        f'<tr><td>{_e(skill)}</td><td class="num">{count}</td></tr>' for skill, count in flows
    )
    return (
        f"<div><h3>{_e(title)}</h3><table><thead><tr><th>Skill</th>"
        f'<th class="num">Pairs</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )


WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 36


def _chart(trend: Trend, points: Sequence[MonthPoint]) -> str:
    values = [point.value(trend.key) for point in points]
    caption = f"<figcaption>{_e(trend.title)}</figcaption>"
    if all(v is None for v in values):
        return f'<figure>{caption}<p class="muted">Nothing to show for this period.</p></figure>'
    low, high = _scale(trend, [v for v in values if v is not None])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points))

    def x(i: int) -> float:
        return LEFT + step * (i + 0.5)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    colour = COLOURS.get(trend.key, "#3e7cb1")
    svg = [
        f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{_e(trend.title)} by month" data-kpi="{trend.key}">'
    ]
    for tick in _ticks(low, high):
        ty = y(tick)
        svg.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"'
            ' stroke="#e4e7eb" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{_tick_label(tick, trend.unit)}</text>"
        )
    every = -(-len(points) // 12)  # at most 12 month labels
    for i, point in enumerate(points):
        if i % every:
            continue
        year, month = point.month.split("-")
        svg.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle">'
            f"{calendar.month_abbr[int(month)]}</text>"
        )
        if i == 0 or int(month) <= every:
            svg.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 28}" text-anchor="middle">'
                f"{year}</text>"
            )
    if trend.kind == "bar":
        svg.extend(_bars(trend, points, x, y, step, low, colour))
    else:
        svg.extend(_line(trend, points, x, y, colour))
    svg.append("</svg>")
    return f"<figure>{caption}{''.join(svg)}</figure>"


def _bars(trend, points, x, y, step, low, colour) -> list[str]:
    out = []
    width = max(2.0, step * 0.7)
    for i, point in enumerate(points):
        value = point.value(trend.key)
        if value is None:
            continue
        top, base = y(value), y(low)
        out.append(
            f'<rect class="point" data-kpi="{trend.key}" data-month="{point.month}"'
            f' data-value="{_raw(value)}" x="{x(i) - width / 2:.1f}" y="{top:.1f}"'
            f' width="{width:.1f}" height="{max(0.0, base - top):.1f}" fill="{colour}">'
            f"<title>{point.month}: {format_value(value, '')}</title></rect>"
        )
    return out


def _line(trend, points, x, y, colour) -> list[str]:
    out, run = [], []
    unit = _unit_of(trend)
    for i, point in enumerate(points):
        value = point.value(trend.key)
        if value is None:
            out.append(_polyline(run, colour))
            run = []
            continue
        run.append(f"{x(i):.1f},{y(value):.1f}")
        out.append(
            f'<circle class="point" data-kpi="{trend.key}" data-month="{point.month}"'
            f' data-value="{_raw(value)}" cx="{x(i):.1f}" cy="{y(value):.1f}" r="3.5"'
            f' fill="{colour}"><title>{point.month}: {format_value(value, unit)}</title>'
            "</circle>"
        )
    out.append(_polyline(run, colour))
    return [part for part in out if part]


def _polyline(run: list[str], colour: str) -> str:
    if len(run) < 2:
        return ""
    return (
        f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}"'
        ' stroke-width="2" stroke-linejoin="round"/>'
    )


def _scale(trend: Trend, values: list[float]) -> tuple[float, float]:
    if trend.unit == "fraction":
        return 0.0, 1.0
    if trend.unit == "rating":
        return 1.0, 5.0
    top = max(values + [1])
    magnitude = 10 ** max(0, len(str(int(top))) - 1)
    return 0.0, float(-(-top // magnitude) * magnitude)


def _ticks(low: float, high: float) -> list[float]:
    return [low + (high - low) * i / 4 for i in range(5)]


def _tick_label(value: float, unit: str) -> str:
    if unit == "fraction":
        return f"{value * 100:.0f}%"
    if unit == "rating":
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
