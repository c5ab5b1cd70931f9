import re
import xml.etree.ElementTree as ElementTree

from tasks.prm.evaluate import BestOfNPoint, FirstErrorResult, StepLabelShare, calibration
from tasks.prm.report import ReportData, render_report

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


def test_the_report_escapes_text_and_shows_the_numbers():
    page = report()
    assert "PRM evaluation &lt;v1&gt;" in page and "v2 &amp; snapshot 9" in page
    assert "<b>0.250</b> of 8 solutions" in page
    assert "0.500 (3/6)" in page and "0.500 (2/4)" in page
    assert "<td>N=4</td>" not in page and "<th>N=4</th>" in page
    assert "no ORM baseline" in page
