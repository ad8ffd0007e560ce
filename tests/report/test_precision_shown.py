"""Each job's recorded precision (the arithmetic the loop ran: fp32 or amp) is on its model page."""

from __future__ import annotations

import re


def test_the_model_page_shows_each_job_precision(night2_report):
    page = (night2_report.parent / "model-faster_rcnn.html").read_text(encoding="utf-8")
    table = re.search(r'<table class="jobs">(.*?)</table>', page, flags=re.S)
    assert table is not None and "<th>precision</th>" in table.group(1)
    rows = re.findall(r"<tr><td><code>.*?</tr>", table.group(1), flags=re.S)
    assert rows and all("<td>fp32</td>" in row for row in rows)
