"""The HTML report of a suite: regressions with exactly what changed, the CLI, and the pages as
headless Chromium renders them (screenshots saved; leaderboard and images checked in the DOM)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from replicate.cli import main
from replicate.leaderboard import leaderboard_rows
from replicate.report import write_report
from replicate.store.results_store import ResultStore

# The suites of tests/report/conftest.py (fixture ``nights`` gives the same values to tests).
NIGHT1, NIGHT2 = "smoke-20261121", "smoke-20261122"
MODELS = ("faster_rcnn", "pix2pix", "yolov4")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "results" / "test-artifacts" / "report"


def _changes(page: str) -> dict[str, list[tuple[str, str, str, str]]]:
    """Per regression block of the index: its (section, key, before, after) rows."""
    block_re = r'<div class="regression" data-model="([^"]+)">(.*?)</div>\s*(?=<div class="regression"|</section>)'
    blocks = re.findall(block_re, page, flags=re.S)
    out = {}
    for model, block in blocks:
        row_re = r'<tr class="change"><td>(.*?)</td><td><code>(.*?)</code></td>\s*<td>(.*?)</td><td>(.*?)</td>'
        rows = re.findall(row_re, block, flags=re.S)
        out[model] = [tuple(html.unescape(cell) for cell in row) for row in rows]
    return out


def test_report_names_each_regression_and_exactly_what_changed(night2_report, nights):
    assert (nights["night1"], nights["night2"]) == (NIGHT1, NIGHT2) and sorted(nights["plan"][NIGHT2]) == list(MODELS)
    index = night2_report
    page = index.read_text(encoding="utf-8")
    changes = _changes(page)
    # The two regressions, each with its single recorded cause and nothing else (no job ids,
    # timestamps, suite ids, seeds or config hashes).
    assert changes == {
        "faster_rcnn": [("environment", "torch", "2.14.1", "2.15.0")],
        "yolov4": [("config", "model.tiers.smoke.recipe.lr", "0.004", "0.002")],
    }
    assert "Regressions (2)" in page and f"PASS in {NIGHT1}" in page
    assert 'data-model="pix2pix"' in page and "pix2pix/" not in page.split('id="regressions"')[1]
    model_page = (index.parent / "model-yolov4.html").read_text(encoding="utf-8")
    assert "REGRESSION since " + NIGHT1 in model_page and "model.tiers.smoke.recipe.lr" in model_page


def test_report_of_the_earlier_suite_ignores_later_nights(store, tmp_path):
    page = write_report(store, NIGHT1, tmp_path / "night1").read_text(encoding="utf-8")
    assert "Regressions (0)" in page and NIGHT2 not in page


HOSTILE = "<script>alert(1)</script>"


def test_every_value_is_escaped(store, tmp_path):
    # Claim sources and failure messages are free text (a config file, an exception): copy a
    # night-2 group with both made hostile into a fresh store, and neither may become markup.
    job = next(j for j in store.jobs(suite_id=NIGHT2) if j["model"] == "yolov4" and j["seed"] == 0)
    group = next(g for g in store.groups(NIGHT2) if g["model"] == "yolov4")
    claim = {**job["compared_with"], "source": f"paper {HOSTILE}"}
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as hostile:
        hostile.upsert_suite("hostile", "smoke", {})
        hostile.save_job({**job, "suite_id": "hostile", "compared_with": claim, "failure_message": f"boom {HOSTILE}"})
        hostile.save_group({**group, "suite_id": "hostile", "seeds": [0], "compared_with": claim,
                            "message": f"boom {HOSTILE}"})
        index = write_report(hostile, "hostile", tmp_path / "report")
    escaped = html.escape(HOSTILE, quote=False)
    for page in (index, index.parent / "model-yolov4.html"):
        text = page.read_text(encoding="utf-8")
        assert escaped in text and "<script" not in text, page.name
    assert f"boom {escaped}" in (index.parent / "model-yolov4.html").read_text(encoding="utf-8")


NOTHING = {"kind": "none", "metric": None, "value": None, "tolerance": 0.0, "tolerance_kind": "relative",
           "direction": "lower", "source": "calibration run: nothing to compare with", "split": None, "spread": None,
           "low": None, "high": None}


def _leaderboard_cells(page: str) -> dict[str, str]:
    """Each leaderboard row's HTML, by model."""
    rows = re.findall(r'<tr class="model-row" data-model="([^"]+)" data-section="[^"]+">(.*?)</tr>', page, flags=re.S)
    return dict(rows)


def _section(page: str, name: str) -> str:
    """The HTML of one leaderboard section (paper or canary)."""
    return page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


def test_rows_say_what_they_are_compared_with_and_measured_is_its_own_verdict(store, tmp_path):
    # Night 1 as stored (smoke: every row compared with a reference of this implementation),
    # copied with yolov4 compared with a paper's claim and pix2pix with nothing (MEASURED).
    retarget = {"yolov4": lambda t: {**t, "kind": "claim", "source": "YOLOv4 paper, Table 8"},
                "pix2pix": lambda t: {**NOTHING, "metric": t["metric"]}}
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as mixed:
        mixed.upsert_suite("mixed", "smoke", {})
        for job in store.jobs(suite_id=NIGHT1):
            change = retarget.get(job["model"], lambda t: t)
            verdict = "MEASURED" if job["model"] == "pix2pix" else job["verdict"]
            mixed.save_job({**job, "suite_id": "mixed", "compared_with": change(job["compared_with"]),
                            "verdict": verdict})
        for group in store.groups(NIGHT1):
            change = retarget.get(group["model"], lambda t: t)
            verdict = "MEASURED" if group["model"] == "pix2pix" else group["verdict"]
            mixed.save_group({**group, "suite_id": "mixed", "compared_with": change(group["compared_with"]),
                              "verdict": verdict})
        index = write_report(mixed, "mixed", tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    cells = _leaderboard_cells(page)
    assert "reference (this implementation)" in cells["faster_rcnn"] and "claim" not in cells["faster_rcnn"]
    assert "claim (paper/zoo)" in cells["yolov4"] and "YOLOv4 paper, Table 8" in cells["yolov4"]
    assert "reference (this" not in cells["yolov4"]
    assert 'class="verdict v-MEASURED">MEASURED</span>' in cells["pix2pix"] and "PASS" not in cells["pix2pix"]
    assert "nothing to compare with" in cells["pix2pix"]
    # The claim answers the sponsors' question, apart from the canary of this implementation.
    paper, canary = _section(page, "paper"), _section(page, "canary")
    assert 'data-model="yolov4"' in paper and 'data-model="faster_rcnn"' not in paper
    assert 'data-model="faster_rcnn"' in canary and 'data-model="yolov4"' not in canary
    assert "YOLOv4 paper, Table 8" in paper and "tolerance" in paper
    # The suite's summary counts MEASURED apart from PASS (and the cost per PASS is over 2 PASS).
    assert "(2 PASS, 1 MEASURED: nothing to compare with)" in page
    assert ".v-MEASURED {" in page
    smoke = (index.parent / "model-faster_rcnn.html").read_text(encoding="utf-8")
    assert "reference (this implementation)" in smoke and "claim" not in smoke.split("<h3>")[0]
    measured = (index.parent / "model-pix2pix.html").read_text(encoding="utf-8")
    assert measured.count('class="verdict v-MEASURED"') >= 2 and 'class="verdict v-PASS"' not in measured


def test_small_costs_show_three_significant_figures(night2_report, store):
    # A smoke group on the cpu profile (0.10/h) costs well under a cent: "0.00" would hide it.
    page = night2_report.read_text(encoding="utf-8")
    for row in leaderboard_rows(store, NIGHT2):
        assert 0 < row["cost"] < 0.01 and f"<td class=\"n cost\">{row['cost']:.3g} USD<div" in page, row["cost"]
    assert "prices: lab rate (placeholder" in page and "placeholders, not yet the lab&#39;s own rates" in page


def test_cli_report_defaults_to_the_latest_suite_under_results(results_root, capsys):
    assert main(["report", f"results_dir={results_root}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["suite_id"] == NIGHT2
    assert Path(out["index"]) == results_root / "reports" / NIGHT2 / "index.html"
    assert Path(out["index"]).is_file()


def test_cli_report_unknown_suite_or_empty_store_exits_2_naming_it(results_root, tmp_path, capsys):
    assert main(["report", "--suite-id", "smoke-19990101", f"results_dir={results_root}"]) == 2
    err = capsys.readouterr().err
    assert "smoke-19990101" in err and len(err.strip().splitlines()) == 1
    ResultStore(f"sqlite:///{tmp_path / 'empty' / 'zoo.db'}").close()     # a store without a suite
    assert main(["report", f"results_dir={tmp_path / 'empty'}"]) == 2
    err = capsys.readouterr().err
    assert "no suite" in err and len(err.strip().splitlines()) == 1


def test_cli_report_out_that_cannot_be_written_exits_2_naming_it(results_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "report"):       # a file; a folder under a file
        assert main(["report", f"results_dir={results_root}", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--out" in err[0] and str(out) in err[0], err
    assert blocker.read_text() == "not a folder"


def test_a_suite_writes_its_report_where_the_cli_does_and_a_report_failure_is_one_line(
        results_dir, shapes_root, tiny):
    from replicate.harness import run_suite
    from replicate.report import default_report_dir

    overrides = ["suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]", "suite_id=night.1",
                 "scheduler=inline", "tier.compare_with=none", f"results_dir={results_dir}",
                 f"datasets.shapes.root={shapes_root}", *tiny]
    first = run_suite(overrides, echo=lambda line: None)
    # Nothing to compare with: MEASURED, shown as such, and the suite is not all PASS.
    assert [j["verdict"] for j in first.jobs] == ["MEASURED"] and not first.all_pass
    assert 'class="verdict v-MEASURED">MEASURED</span>' in Path(first.report).read_text(encoding="utf-8")
    assert Path(first.report) == default_report_dir(results_dir, "night.1") / "index.html"
    assert Path(first.report).parent.name == "night.1" and Path(first.report).is_file()
    shutil.rmtree(results_dir / "reports")
    (results_dir / "reports").write_text("in the way")            # the report cannot be written now
    lines: list[str] = []
    again = run_suite(overrides, echo=lines.append)                 # the finished job is skipped
    assert again.report is None and [j["verdict"] for j in again.jobs] == ["MEASURED"]
    failed = [line for line in lines if line.startswith("report:")]
    assert len(failed) == 1 and "failed" in failed[0] and "the store has every result" in failed[0]


def test_cli_history_marks_the_regression_and_lists_what_changed(results_root, capsys):
    assert main(["history", "--model", "faster_rcnn", f"results_dir={results_root}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["suite_id"]: r["regression"] for r in rows} == {NIGHT2: NIGHT1, NIGHT1: None}
    assert {r["suite_id"]: r["group_verdict"] for r in rows} == {NIGHT2: "BELOW", NIGHT1: "PASS"}
    assert main(["history", "--model", "faster_rcnn", f"results_dir={results_root}"]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "environment torch: '2.14.1' -> '2.15.0'" in out


# Headless Chromium -------------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", function () {
  var control = document.getElementById("probe-control");
  var rows = Array.from(document.querySelectorAll("table.leaderboard tbody tr")).map(function (tr) {
    var box = tr.getBoundingClientRect();
    // Visible: laid out, starting within the first screen, and not cut off on the right.
    return {model: tr.dataset.model, visible: box.width > 0 && box.height > 0 && box.top < innerHeight &&
            box.right <= innerWidth};
  });
  var images = Array.from(document.images).filter(function (img) { return img !== control; });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    rows: rows,
    images: images.map(function (img) { return {src: img.getAttribute("src"), complete: img.complete,
                                                width: img.naturalWidth, height: img.naturalHeight}; }),
    control: {complete: control.complete, width: control.naturalWidth}
  });
  document.body.appendChild(out);
});
</script>
<img id="probe-control" src="does-not-exist.png" alt="">
"""


def _chromium() -> str:
    """The Chromium binary; outside CI its absence skips, in CI (CI=true) it fails."""
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        message = "headless Chromium not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it (.ci/run)")
        pytest.skip(message)
    return found


def _run_chromium(binary: str, *args: str) -> str:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,1000", "--virtual-time-budget=10000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _probe(binary: str, page: Path) -> dict:
    """Load a copy of ``page`` (same folder, so relative links resolve the same) with the probe
    script appended, and read back what the browser measured after the load event."""
    probe = page.with_name(f"_probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _run_chromium(binary, "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, f"the probe did not run; DOM starts {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


def _screenshot(binary: str, page: Path, target: Path, height: int) -> Path:
    from PIL import Image

    _run_chromium(binary, f"--screenshot={target}", f"--window-size=1400,{height}", page.as_uri())
    with Image.open(target) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert image.size == (1400, height)
        assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target, ARTIFACTS / target.name)
    print(f"screenshot: {target} (copy: {ARTIFACTS / target.name})")
    return target


def test_chromium_renders_the_leaderboard_and_every_image(night2_report, tmp_path):
    binary = _chromium()
    index = night2_report
    _screenshot(binary, index, tmp_path / "report-index.png", 1000)
    _screenshot(binary, index.parent / "model-faster_rcnn.html", tmp_path / "report-faster_rcnn.png", 1900)
    measured = _probe(binary, index)
    assert sorted(r["model"] for r in measured["rows"]) == list(MODELS)
    assert all(r["visible"] for r in measured["rows"]), measured["rows"]
    # The check can fail: a missing file reports width 0.
    assert measured["control"] == {"complete": True, "width": 0}
    for model in MODELS:
        page = _probe(binary, index.parent / f"model-{model}.html")
        assert len(page["images"]) == 2, page["images"]
        assert all(img["complete"] and img["width"] > 0 and img["height"] > 0 for img in page["images"]), page


def test_a_job_run_with_a_suite_id_is_reported_under_that_suite(results_dir, shapes_root, tiny, capsys):
    from replicate.cli import main
    from replicate.harness import run_one

    common = ["model=yolov4", "scheduler=inline", "tier.compare_with=none", f"results_dir={results_dir}",
              f"datasets.shapes.root={shapes_root}", *tiny]
    (row,) = run_one(common + ["suite_id=adhoc"], echo=lambda _: None).jobs
    assert main(["report", "--suite-id", "adhoc", f"results_dir={results_dir}"]) == 0
    index = Path(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    text = index.read_text(encoding="utf-8")
    assert row["verdict"] == "MEASURED" and "yolov4" in text and "v-MEASURED" in text


def test_the_paper_section_keeps_a_failing_claim_with_its_value_and_trend_in_chromium(store, tmp_path):
    """yolov4 judged against a claim on both nights (PASS, then BELOW): it stands in the paper
    section with its measured value, its trend against night 1 and its cost in USD; the smoke
    groups are the canary. Rendered by headless Chromium (screenshot in the test artifacts)."""
    claim = {"kind": "claim", "source": "Bochkovskiy et al. 2020, Table 8 (stand-in for this test)"}
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as mixed:
        for night in (NIGHT1, NIGHT2):
            mixed.upsert_suite(night, "nightly", {})
            for job in store.jobs(suite_id=night):
                target = {**job["compared_with"], **claim} if job["model"] == "yolov4" else job["compared_with"]
                mixed.save_job({**job, "compared_with": target})
            for group in store.groups(night):
                target = {**group["compared_with"], **claim} if group["model"] == "yolov4" else group["compared_with"]
                mixed.save_group({**group, "compared_with": target})
        index = write_report(mixed, NIGHT2, tmp_path / "report")
        (yolo,) = [r for r in leaderboard_rows(mixed, NIGHT2) if r["model"] == "yolov4"]
    page = index.read_text(encoding="utf-8")
    paper, canary = _section(page, "paper"), _section(page, "canary")
    assert yolo["verdict"] == "BELOW" and yolo["mean"] is not None and yolo["trend"] < 0
    row = _leaderboard_cells(paper)["yolov4"]
    assert f"{yolo['mean']:.4g}" in row and "▼" in row and f"{NIGHT1}: PASS" in row and " USD" in row
    assert "Bochkovskiy et al. 2020, Table 8" in row and "tolerance" in row
    assert set(_leaderboard_cells(canary)) == {"faster_rcnn", "pix2pix"}
    binary = _chromium()
    dom = _run_chromium(binary, "--dump-dom", index.as_uri())
    assert 'id="paper"' in dom and 'data-section="against the paper"' in dom
    _screenshot(binary, index, tmp_path / "leaderboard-paper-and-canary.png", 1400)
