"""report.html in headless Chromium (Selenium): it renders, its figures load, its tables sort
and filter, the metric switch shows one metric at a time, the console stays clean and a
screenshot is not blank.

Needs the Debian packages `chromium` and `chromium-driver` and `selenium` (the dev extra).
Without them these tests are skipped with a line that says how to get them, unless
PROGBENCH_REQUIRE_BROWSER=1 is set (as CI should), where their absence is a failure.
PROGBENCH_CHROMIUM and PROGBENCH_CHROMEDRIVER point at other binaries.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from progbench.report import REPORT_HTML
from tests.helpers.runtree import built_report

# Module fixtures build stores or full reports: slow, and on one xdist worker (built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_report_browser")]

CHROMIUM = os.environ.get("PROGBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PROGBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = (
    "install them with `apt-get install -y chromium chromium-driver` "
    "(and selenium: pip install -e '.[dev]')"
)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def missing_browser() -> list[str]:
    """What the browser tests need and this machine lacks."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium")
    return missing


def require_browser() -> None:
    """Skip (or, with PROGBENCH_REQUIRE_BROWSER=1, fail) when Chromium or its driver is absent."""
    missing = missing_browser()
    if not missing:
        return
    message = f"{', '.join(missing)} missing: {INSTALL_HINT}"
    if os.environ.get("PROGBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message}; PROGBENCH_REQUIRE_BROWSER=1 makes this a failure")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="progbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would otherwise look for one on the network.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser: Any) -> Any:
    browser.get((built_report() / REPORT_HTML).as_uri())
    return browser


def _column(driver: Any, table_id: str, col: int) -> list[str | None]:
    """data-sort (numeric cells) or text of column `col` in the rows' current order."""
    return driver.execute_script(
        """
        const rows = document.getElementById(arguments[0]).tBodies[0].rows;
        return Array.from(rows).map((r) => {
          const c = r.cells[arguments[1]];
          return c.hasAttribute("data-sort") ? c.getAttribute("data-sort") : c.textContent;
        });
        """,
        table_id,
        col,
    )


def _header(driver: Any, table_id: str, name: str) -> tuple[Any, int]:
    from selenium.webdriver.common.by import By

    headers = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    names = [h.text.strip() for h in headers]
    return headers[names.index(name)], names.index(name)


def test_page_renders(page: Any) -> None:
    from selenium.webdriver.common.by import By

    assert page.execute_script("return document.readyState") == "complete"
    assert page.title == "progbench report: MCC, PR-AUC"
    assert page.find_element(By.TAG_NAME, "h1").text == "progbench report: MCC, PR-AUC"
    for section in ("tables", "figures", "statistics", "provenance"):
        assert page.find_element(By.ID, section).is_displayed()
    assert len(page.find_elements(By.CSS_SELECTOR, "#mcc-table-full tbody tr")) == 6
    # MCC is shown first; the PR-AUC views wait behind the switch.
    assert page.find_element(By.ID, "mcc-table-full").is_displayed()
    assert not page.find_element(By.ID, "pr_auc-table-full").is_displayed()


def test_figures_load(page: Any) -> None:
    sizes = page.execute_script(
        "return Array.from(document.images).map((i) => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) == 2 * 6  # six figures per metric, hidden ones included
    for complete, width, height in sizes:
        assert complete and width > 100 and height > 100


def test_numeric_column_sorts_both_ways_with_undefined_last(page: Any) -> None:
    header, col = _header(page, "mcc-table-full", "fft")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    up = [float(x) for x in _column(page, "mcc-table-full", col)]
    assert up == sorted(up) and up != list(reversed(up))
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    down = [float(x) for x in _column(page, "mcc-table-full", col)]
    assert down == sorted(up, reverse=True)
    # Numbers sort as numbers (9 before 10), not as strings.
    header, col = _header(page, "runs", "wall_time_s")
    header.click()
    times = [float(x) for x in _column(page, "runs", col)]
    assert times == sorted(times) and len(times) == 78


def test_text_column_sorts(page: Any) -> None:
    header, col = _header(page, "mcc-table-full", "backbone")
    header.click()
    names = _column(page, "mcc-table-full", col)
    assert names == sorted(names)
    header.click()
    assert _column(page, "mcc-table-full", col) == sorted(names, reverse=True)


def test_filter_hides_rows(page: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = page.find_element(By.CSS_SELECTOR, 'input.filter[data-table="mcc-table-full"]')
    box.clear()
    box.send_keys("severity")
    visible = page.find_elements(By.CSS_SELECTOR, "#mcc-table-full tbody tr:not([hidden])")
    assert len(visible) == 3 and all("severity" in r.text for r in visible)
    box.send_keys(Keys.BACKSPACE * len("severity"))  # typing fires `input`; clear() does not
    assert len(page.find_elements(By.CSS_SELECTOR, "#mcc-table-full tbody tr:not([hidden])")) == 6


def test_metric_switch_shows_one_metric_at_a_time(page: Any) -> None:
    from selenium.webdriver.common.by import By

    def shown(metric: str) -> list[bool]:
        views = page.find_elements(By.CSS_SELECTOR, f'.metric-view[data-metric="{metric}"]')
        return [v.is_displayed() for v in views]

    assert shown("mcc") == [True] * 3 and shown("pr_auc") == [False] * 3
    page.find_element(By.CSS_SELECTOR, 'input[name="metric"][value="pr_auc"]').click()
    assert shown("mcc") == [False] * 3 and shown("pr_auc") == [True] * 3
    table = page.find_element(By.ID, "pr_auc-table-full")
    assert table.is_displayed() and "PR-AUC" in page.find_element(By.ID, "tables").text
    figure = page.find_element(By.ID, "fig-pr_auc-appendix-ci")
    assert figure.is_displayed()
    page.find_element(By.CSS_SELECTOR, 'input[name="metric"][value="mcc"]').click()
    assert shown("mcc") == [True] * 3 and shown("pr_auc") == [False] * 3


def test_no_console_errors(page: Any) -> None:
    # Runs after the clicks above (tests run in file order): they must not log errors either.
    logs = page.get_log("browser")
    errors = [e for e in logs if e.get("level") in ("SEVERE", "WARNING")]
    assert errors == [], errors


def test_screenshot_is_not_blank(page: Any) -> None:
    page.execute_script("document.getElementById('figures').scrollIntoView()")
    shot = Image.open(io.BytesIO(page.get_screenshot_as_png())).convert("RGB")
    pixels = np.asarray(shot, dtype=float)
    assert shot.size[0] >= 1000
    assert pixels.std() > 20  # a blank or single-colour page has none
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a figure, not just text
