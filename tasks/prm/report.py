"""The evaluation report: one self-contained HTML file with hand-drawn SVG charts (no plotting library).

Charts: Best-of-N accuracy against N (log2 axis), a reliability diagram (calibration), and the
share of steps labelled fine by step index.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.prm.evaluate import BestOfNPoint, CalibrationBin, FirstErrorResult, StepLabelShare

WIDTH, HEIGHT = 560, 340
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 150, 30, 46
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
DASHED = {"random", "oracle"}


@dataclass
class ReportData:
    title: str
    facts: list[tuple[str, str]]  # model, dataset, evaluation set, ...
    first_error: FirstErrorResult | None
    threshold_source: str
    best_of_n: dict[str, list[BestOfNPoint]]
    best_of_n_source: str
    min_on_last: tuple[float | None, int]
    calibration: list[CalibrationBin]
    calibration_error: float | None
    label_distribution: list[StepLabelShare]
    notes: list[str] = field(default_factory=list)


def _escape(value: object) -> str:
    return html.escape(str(value))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    plot_w, plot_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{_escape(title)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2 - MARGIN_RIGHT / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
        f"{_escape(title)}</text>",
    ]
    for tick in range(6):
        value = tick / 5
        y = MARGIN_TOP + plot_h * (1 - value)
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{MARGIN_LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{value:.1f}</text>')
    parts.append(
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
    )
    parts.append(
        f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">{_escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{MARGIN_TOP + plot_h / 2}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 14 {MARGIN_TOP + plot_h / 2})">{_escape(y_label)}</text>'
    )
    return parts


def _y(value: float) -> float:
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    return MARGIN_TOP + plot_h * (1 - max(0.0, min(1.0, value)))


def _legend(names: Sequence[str], colours: Sequence[str]) -> list[str]:
    parts = []
    x = WIDTH - MARGIN_RIGHT + 12
    for row, (name, colour) in enumerate(zip(names, colours, strict=True)):
        y = MARGIN_TOP + 8 + row * 17
        dash = ' stroke-dasharray="5 3"' if name in DASHED else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" stroke-width="2.5"{dash}/>')
        parts.append(f'<text x="{x + 28}" y="{y + 4}" font-size="11">{_escape(name)}</text>')
    return parts


def _with_interval(point: BestOfNPoint | None) -> str:
    if point is None or point.low is None or point.high is None:
        return _share(point.accuracy if point is not None else None)
    return f"{point.accuracy:.3f} [{point.low:.2f}, {point.high:.2f}]"


def best_of_n_svg(curves: dict[str, list[BestOfNPoint]]) -> str:
    """Accuracy against N on a log2 axis, one line per method, each point with a bar for its 95%
    bootstrap interval over problems (where the point carries one)."""
    parts = _frame("Best-of-N accuracy", "N (solutions per problem)", "accuracy")
    sizes = sorted({point.n for points in curves.values() for point in points})
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    top = math.log2(max(sizes)) if sizes and max(sizes) > 1 else 1.0

    def x_of(n: int) -> float:
        return MARGIN_LEFT + 12 + (plot_w - 24) * (math.log2(n) / top)

    for n in sizes:
        x = x_of(n)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" font-size="11">{n}</text>')
    names = [name for name, points in curves.items() if points]
    colours = [PALETTE[index % len(PALETTE)] for index in range(len(names))]
    for name, colour in zip(names, colours, strict=True):
        coordinates = " ".join(f"{x_of(point.n):.1f},{_y(point.accuracy):.1f}" for point in curves[name])
        dash = ' stroke-dasharray="5 3"' if name in DASHED else ""
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for point in curves[name]:
            x = x_of(point.n)
            if point.low is not None and point.high is not None:
                # Bars of different methods at the same N are set a little apart so all stay readable.
                bar = x + 2.5 * (names.index(name) - (len(names) - 1) / 2)
                parts.append(
                    f'<line x1="{bar:.1f}" y1="{_y(point.low):.1f}" x2="{bar:.1f}" y2="{_y(point.high):.1f}" '
                    f'stroke="{colour}" stroke-width="1" stroke-opacity="0.6"><title>{name} N={point.n}: '
                    f'{point.accuracy:.3f} [{point.low:.3f}, {point.high:.3f}]</title></line>'
                )
            parts.append(f'<circle cx="{x:.1f}" cy="{_y(point.accuracy):.1f}" r="3" fill="{colour}"/>')
    parts += _legend(names, colours)
    parts.append(
        f'<text x="{MARGIN_LEFT}" y="{HEIGHT - 6}" font-size="10" fill="#555">bars: 95% bootstrap intervals, problems resampled</text>'
    )
    return "\n".join(parts + ["</svg>"])


def calibration_svg(bins: Sequence[CalibrationBin]) -> str:
    """Reliability diagram: mean predicted against observed share per bin; the diagonal is perfect."""
    parts = _frame("Calibration (steps)", "predicted P(step is fine)", "observed share fine")
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT

    def x_of(value: float) -> float:
        return MARGIN_LEFT + plot_w * value

    for tick in range(6):
        parts.append(
            f'<text x="{x_of(tick / 5):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" font-size="11">'
            f"{tick / 5:.1f}</text>"
        )
    parts.append(f'<line x1="{x_of(0)}" y1="{_y(0)}" x2="{x_of(1)}" y2="{_y(1)}" stroke="#999" stroke-dasharray="4 3"/>')
    filled = [b for b in bins if b.count]
    largest = max((b.count for b in filled), default=1)
    coordinates = " ".join(f"{x_of(b.mean_predicted):.1f},{_y(b.observed):.1f}" for b in filled)
    parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for b in filled:
        radius = 3 + 6 * math.sqrt(b.count / largest)
        parts.append(
            f'<circle cx="{x_of(b.mean_predicted):.1f}" cy="{_y(b.observed):.1f}" r="{radius:.1f}" '
            f'fill="{PALETTE[0]}" fill-opacity="0.5"><title>{b.count} steps</title></circle>'
        )
    parts += _legend(["model", "perfect"], [PALETTE[0], "#999"])
    parts.append(f'<text x="{WIDTH - MARGIN_RIGHT + 12}" y="{MARGIN_TOP + 60}" font-size="11">circle area ~ steps</text>')
    return "\n".join(parts + ["</svg>"])


def label_distribution_svg(shares: Sequence[StepLabelShare]) -> str:
    """Bars: the share of steps labelled fine at each step index; the count sits above each bar."""
    parts = _frame("Labels by step index", "step index", "share labelled fine")
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    slot = plot_w / max(1, len(shares))
    for index, share in enumerate(shares):
        x = MARGIN_LEFT + slot * index + slot * 0.15
        y = _y(share.positive_share)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{_y(0) - y:.1f}" fill="{PALETTE[2]}">'
            f"<title>{share.count} steps</title></rect>"
        )
        parts.append(f'<circle cx="{x + slot * 0.35:.1f}" cy="{_y(share.mean_q):.1f}" r="3.5" fill="{PALETTE[1]}"/>')
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">n={share.count}</text>'
        )
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" font-size="11">'
            f"{share.step}</text>"
        )
    parts += _legend(["hard label = fine", "mean soft q"], [PALETTE[2], PALETTE[1]])
    return "\n".join(parts + ["</svg>"])


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string (inline CSS and SVG, nothing fetched)."""
    facts = "".join(f"<tr><th>{_escape(name)}</th><td>{_escape(value)}</td></tr>" for name, value in data.facts)
    sections = [f"<h1>{_escape(data.title)}</h1>", f"<table>{facts}</table>"]
    sections.append("<h2>First-error identification (ProcessBench style)</h2>")
    if data.first_error is None:
        sections.append("<p>No rows to measure.</p>")
    else:
        result = data.first_error
        sections.append(_table(
            ["threshold", "rows", "acc. erroneous", "acc. correct", "F1"],
            [[f"{result.threshold:.4f}", result.rows,
              f"{_share(result.accuracy_erroneous)} ({result.erroneous_exact}/{result.erroneous})",
              f"{_share(result.accuracy_correct)} ({result.correct_exact}/{result.correct})", _share(result.f1)]],
        ))
        sections.append(f"<p class=note>{_escape(data.threshold_source)}</p>")
    sections.append("<h2>Best-of-N</h2>")
    sections.append(f"<p class=note>{_escape(data.best_of_n_source)}</p>")
    sizes = sorted({point.n for points in data.best_of_n.values() for point in points})
    if sizes:
        sections.append(best_of_n_svg(data.best_of_n))
        rows = []
        for method, points in data.best_of_n.items():
            by_n = {point.n: point for point in points}
            rows.append([method] + [_with_interval(by_n.get(n)) for n in sizes])
        problems = {point.n: point.problems for points in data.best_of_n.values() for point in points}
        rows.append(["problems"] + [problems[n] for n in sizes])
        sections.append(_table(["method"] + [f"N={n}" for n in sizes], rows))
    else:
        sections.append("<p>No held-out problems with solutions.</p>")
    share, eligible = data.min_on_last
    sections.append("<h2>Where the minimum falls</h2>")
    sections.append(
        f"<p>The lowest step score is on the last step for <b>{_share(share)}</b> of {eligible} solutions with "
        "two or more steps. Near 1, the PRM behaves as an outcome judge.</p>"
    )
    sections.append("<h2>Calibration</h2>")
    sections.append(calibration_svg(data.calibration))
    sections.append(f"<p class=note>Expected calibration error: {_share(data.calibration_error)}</p>")
    sections.append("<h2>Label distribution by step index</h2>")
    sections.append(label_distribution_svg(data.label_distribution))
    if data.notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_escape(note)}</li>" for note in data.notes) + "</ul>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:900px;margin:24px auto;color:#222}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}.note{color:#555;font-size:13px}svg{display:block;margin:8px 0}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_escape(data.title)}</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
