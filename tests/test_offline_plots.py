"""`dvc plots` pages render with no network: the vendored template, checked in headless Chromium.

The browser runs with every request sent to a dead proxy, so a page that needs a CDN stays
blank; the control test shows that DVC's default page does.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path

import pytest
from conftest import PROJECT_FILES, ROOT, TINY_OVERRIDES, Project

TEMPLATE_DIR = ROOT / ".dvc" / "plots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INLINE_SCRIPT = re.compile(
    r"<!-- npm (?P<package>[\w-]+)@(?P<version>[\d.]+) (?P<file>\S+), BSD-3-Clause, "
    r"sha256 (?P<sha256>[0-9a-f]{64}) -->\n<script>\n(?P<code>.*?)\n</script>",
    re.DOTALL,
)
PLOT_DIV = re.compile(r'<div id\s*=\s*"([^"]+)"')
EXPECTED_LIBRARIES = {"vega", "vega-lite", "vega-embed"}


def configured_template() -> Path:
    """The plots.html_template of the repository's .dvc/config, resolved as DVC does."""
    config = ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    return ROOT / ".dvc" / config["plots"]["html_template"]


def test_dvc_config_names_the_offline_template_and_test_projects_copy_it():
    template = configured_template()
    assert template == TEMPLATE_DIR / "offline.html"
    assert template.is_file()
    assert str(template.relative_to(ROOT)) in PROJECT_FILES


def test_template_has_dvc_plot_placeholder_and_no_cdn_scripts():
    page = (TEMPLATE_DIR / "offline.html").read_text()
    assert page.count("{plot_divs}") == 1
    # Without {scripts}, DVC has nowhere to put its CDN <script src=...> tags.
    assert "{scripts}" not in page
    assert re.search(r"<script[^>]+src=", page) is None
    assert (TEMPLATE_DIR / "offline.html").stat().st_size < 1024 * 1024


def test_each_inlined_library_is_the_pinned_npm_build_and_listed_in_the_notice():
    page = (TEMPLATE_DIR / "offline.html").read_text()
    notice = (TEMPLATE_DIR / "NOTICE.md").read_text()
    scripts = list(INLINE_SCRIPT.finditer(page))
    assert {script["package"] for script in scripts} == EXPECTED_LIBRARIES
    for script in scripts:
        digest = hashlib.sha256(script["code"].encode("utf-8")).hexdigest()
        assert digest == script["sha256"], script["package"]
        assert f"| {script['package']} | {script['version']} |" in notice
        assert script["sha256"] in notice


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        if os.environ.get("FINSEQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FINSEQ_REQUIRE_BROWSER=1 but none of {', '.join(BROWSERS)} is on PATH")
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    return path


def rendered_dom(browser: str, page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, in a browser that cannot reach any network."""
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Every request, loopback included, goes to a closed port: no network at all.
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def plot_segments(dom: str, plot_ids: list[str]) -> dict[str, str]:
    """Each plot's part of the DOM: from its div to the next plot's div."""
    starts = [dom.index(f'<div id="{plot_id}"') for plot_id in plot_ids]
    ends = [*starts[1:], len(dom)]
    return {
        plot_id: dom[start:end] for plot_id, start, end in zip(plot_ids, starts, ends, strict=True)
    }


def drawn_texts(segment: str) -> set[str]:
    return set(re.findall(r"<text[^>]*>([^<]+)</text>", segment))


@pytest.fixture(scope="module")
def plotted(shared_reproduced) -> Project:
    return shared_reproduced


@pytest.mark.slow
def test_plots_diff_page_renders_every_chart_without_network(browser, plotted, tmp_path):
    plotted.run("dvc", "plots", "diff", "HEAD", "-o", "offline-plots")
    page = plotted.path / "offline-plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr" not in html
    plot_ids = PLOT_DIV.findall(html)
    assert plot_ids == [
        "Loss_per_epoch",
        "Validation_loss_per_epoch__by_fold",
        "Validation_accuracy_per_epoch",
        "Learning_rate",
        "metrics_equity_csv",
        "metrics_confusion_test_csv",
        "metrics_reliability_csv",
    ]
    segments = plot_segments(rendered_dom(browser, page, tmp_path / "profile"), plot_ids)
    for plot_id, segment in segments.items():
        assert 'class="vega-embed' in segment, plot_id
        assert re.search(r'<svg[^>]*class="marks"', segment), plot_id
    loss_texts = drawn_texts(segments["Loss_per_epoch"])
    assert {"Loss per epoch", "epoch", "cross-entropy"} <= loss_texts
    assert "Test confusion matrix" in drawn_texts(segments["metrics_confusion_test_csv"])
    # One legend entry per walk-forward fold, drawn by the by_fold template.
    by_fold_texts = drawn_texts(segments["Validation_loss_per_epoch__by_fold"])
    last_fold = f"f{TINY_OVERRIDES['split']['folds']}"
    assert {"fold", "f1", last_fold, "final"} <= by_fold_texts
    assert {"strategy", "buy_hold"} <= drawn_texts(segments["metrics_equity_csv"])
    # The reliability diagram (.dvc/plots/reliability.json): one line per class, its axes.
    reliability_texts = drawn_texts(segments["metrics_reliability_csv"])
    assert {"Test reliability (calibration) by class", "class", "down", "flat", "up"} <= (
        reliability_texts
    )
    assert {"predicted probability", "realised frequency"} <= reliability_texts
    # The learning rate's axis (.dvc/plots/learning_rate.json) labels the constant 0.001 as
    # 1.0e-3, not as a row of zeros.
    rate_texts = drawn_texts(segments["Learning_rate"])
    assert {"learning rate", "1.0e-3"} <= rate_texts
    assert not any(text in ("0", "0.0", "0.00") for text in rate_texts)


@pytest.mark.slow
def test_control_dvc_default_cdn_page_stays_blank_without_network(browser, plotted, tmp_path):
    from dvc_render.html import PAGE_HTML

    default_template = tmp_path / "cdn.html"
    default_template.write_text(PAGE_HTML)
    plotted.run("dvc", "plots", "show", "--html-template", str(default_template), "-o", "cdn-plots")
    page = plotted.path / "cdn-plots" / "index.html"
    assert "cdn.jsdelivr" in page.read_text()
    dom = rendered_dom(browser, page, tmp_path / "profile")
    assert '<div id="Loss_per_epoch"' in dom
    assert 'class="marks"' not in dom
