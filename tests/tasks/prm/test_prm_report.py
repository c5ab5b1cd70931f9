import os
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tasks.prm.evaluate import BestOfNPoint, FirstErrorResult, StepLabelShare, calibration
from tasks.prm.report import HEIGHT, MARGIN_BOTTOM, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, WIDTH, ReportData, render_report

SVG = "{http://www.w3.org/2000/svg}"


def report() -> str:
    curves = {
        method: [BestOfNPoint(n, accuracy, 3) for n, accuracy in zip([1, 2, 4], values, strict=True)]
        for method, values in {"prm_min": [0.4, 0.5, 0.6], "majority": [0.4, 0.45, 0.5], "oracle": [0.4, 0.7, 0.9]}.items()
    }
    return render_report(ReportData(
        title="PRM evaluation <v1>",
        facts=[("model", "v1"), ("dataset", "v2 & snapshot 9")],
        first_error=FirstErrorResult(0.5, 10, 6, 3, 4, 2, 0.5, 0.5, 0.5),
        threshold_source="chosen on 5 rows",
        best_of_n=curves,
        best_of_n_source="dataset test solutions",
        min_on_last=(0.25, 8),
        calibration=calibration([0.1, 0.2, 0.9], [False, True, True]),
        calibration_error=0.2,
        label_distribution=[StepLabelShare(1, 10, 0.9, 0.8), StepLabelShare(2, 8, 0.5, 0.4)],
        notes=["no ORM baseline"],
    ))


def test_the_report_is_self_contained_html_with_three_valid_svg_charts():
    page = report()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=", page)  # nothing fetched
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(charts) == 3
    trees = [ElementTree.fromstring(chart) for chart in charts]  # each chart is well-formed XML
    best_of_n, reliability, labels = trees
    assert len(best_of_n.findall(f"{SVG}polyline")) == 3  # one line per method
    assert len(best_of_n.findall(f"{SVG}circle")) == 9
    assert len(reliability.findall(f"{SVG}circle")) == 3  # three non-empty bins
    assert len([r for r in labels.findall(f"{SVG}rect") if r.find(f"{SVG}title") is not None]) == 2


def test_the_best_of_n_plot_draws_each_interval_as_a_bar_from_its_low_to_its_high_end():
    from tasks.prm.report import _y, best_of_n_svg

    curves = {
        "prm_min": [BestOfNPoint(1, 0.5, 60, 0.4, 0.6), BestOfNPoint(2, 0.7, 60, 0.55, 0.8)],
        "majority": [BestOfNPoint(1, 0.5, 60, 0.4, 0.6), BestOfNPoint(2, 0.6, 60)],  # N=2 carries no interval
    }
    tree = ElementTree.fromstring(best_of_n_svg(curves))
    bars = [line for line in tree.findall(f"{SVG}line") if line.find(f"{SVG}title") is not None]
    assert [bar.find(f"{SVG}title").text for bar in bars] == [
        "prm_min N=1: 0.500 [0.400, 0.600]", "prm_min N=2: 0.700 [0.550, 0.800]", "majority N=1: 0.500 [0.400, 0.600]",
    ]
    for bar, (low, high) in zip(bars, [(0.4, 0.6), (0.55, 0.8), (0.4, 0.6)], strict=True):
        assert (float(bar.get("y1")), float(bar.get("y2"))) == (round(_y(low), 1), round(_y(high), 1))
    assert bars[0].get("x1") != bars[2].get("x1")  # two methods' bars at one N stand apart
    assert "95% bootstrap intervals" in best_of_n_svg(curves)


def test_the_report_escapes_text_and_shows_the_numbers():
    page = report()
    assert "PRM evaluation &lt;v1&gt;" in page and "v2 &amp; snapshot 9" in page
    assert "<b>0.250</b> of 8 solutions" in page
    assert "0.500 (3/6)" in page and "0.500 (2/4)" in page
    assert "<td>N=4</td>" not in page and "<th>N=4</th>" in page
    assert "no ORM baseline" in page


# --- the report as a browser draws it ------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1200, 2400)


def screenshot(page: Path, png: Path, profile: Path) -> None:
    """Headless Chromium draws `page` into `png`, with a fresh profile and no network."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (run .ci/run or apt-get install chromium)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(message)
    drawn = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={png}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert drawn.returncode == 0 and png.exists(), drawn.stderr[-2000:]


def chart_frames(pixels) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of each chart's plot frame, top to bottom.

    A frame's left and right edges are the only dark vertical lines as tall as a plot: find every
    column run of dark pixels that long, and pair runs that start on the same row.
    """
    import numpy as np

    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    dark = pixels.max(axis=2) < 180  # the #333 frame, antialiased across two pixels
    runs: dict[int, list[int]] = {}  # top row -> columns
    for x in range(dark.shape[1]):
        column = np.concatenate([[False], dark[:, x], [False]]).astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(column) == 1), np.flatnonzero(np.diff(column) == -1)
        for start, end in zip(starts, ends, strict=True):
            if abs((end - start) - plot_height) <= 3:
                runs.setdefault(int(start), []).append(x)
    frames = []
    for top in sorted(runs):
        if frames and abs(top - frames[-1][1]) <= 2:  # the same edge, antialiased onto the next row
            continue
        columns = sorted(x for row, xs in runs.items() if abs(row - top) <= 2 for x in xs)
        frames.append((columns[0], top, columns[-1], top + plot_height))
    return frames


def coloured(region) -> tuple[int, int]:
    """(pixels with a clear hue, distinct hues among them): axes, grid and text are grey."""
    import numpy as np

    saturation = region.max(axis=2).astype(int) - region.min(axis=2).astype(int)
    hues = region[saturation > 60] // 32  # coarse bins: antialiasing does not make new colours
    return len(hues), len({tuple(hue) for hue in hues.tolist()}) if len(hues) else 0


def test_chromium_draws_every_chart_with_its_data(tmp_path):
    import numpy as np
    from PIL import Image

    page, png = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(report())
    screenshot(page, png, tmp_path / "chromium-profile")
    with Image.open(png) as image:
        assert image.size == WINDOW
        pixels = np.asarray(image.convert("RGB"))
    frames = chart_frames(pixels)
    assert len(frames) == 3, frames  # Best-of-N, calibration, labels by step
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    assert all(abs((right - left) - plot_width) <= 3 for left, _, right, _ in frames), frames
    regions = [pixels[top + 2 : bottom - 1, left + 2 : right - 1] for left, top, right, bottom in frames]
    (curve_pixels, curve_hues), (calibration_pixels, _), (bar_pixels, bar_hues) = map(coloured, regions)
    assert curve_pixels > 300 and curve_hues >= 3  # three methods, three colours
    assert calibration_pixels > 500  # the model's curve, not only its bin circles (~275 pixels here)
    area = regions[2].shape[0] * regions[2].shape[1]
    # Bars of 0.9 and 0.5 of the plot height over 70% of their slots fill about half the plot.
    assert 0.35 < bar_pixels / area < 0.6 and bar_hues >= 2  # green bars, orange mean-q dots
