"""The page (/ui) in a real headless browser, over a live worker's lists and metrics windows.

Needs Debian's chromium and chromium-driver (scripts/test.sh installs them
when it runs as root); skips with a message saying so otherwise.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from streamrec.broker import free_port
from streamrec.client import EventProducer
from streamrec.http_client import RecommendationClient
from streamrec.records import CatalogItem

pytestmark = pytest.mark.integration

READ, WRITE = "ui-read-" + "r" * 16, "ui-write-" + "w" * 16


@pytest.fixture
def browser() -> Iterator[Any]:
    driver_path = shutil.which("chromedriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if driver_path is None or chromium is None:
        pytest.skip(
            "no chromium / chromedriver: install Debian's chromium and chromium-driver "
            "(scripts/test.sh does when run as root) to test the page in a browser"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _until(what: str, check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_shows_a_users_items_and_draws_health_charts(make_stack, browser) -> None:
    from selenium.webdriver.common.by import By

    stack = make_stack(workers=1)
    s = stack.settings
    user = f"ui-user-{uuid.uuid4().hex[:6]}"
    with EventProducer(s) as p:
        for i in range(6):
            p.publish_item(CatalogItem(f"film-{i}", f"Film number {i}", ("Drama",), price=5.0 + i))
        for other in range(20):  # co-visits, so the user's list has items
            for i in (0, 1, 2, 3):
                p.track("view", f"other-{other}", item_id=f"film-{i}")
        p.track("view", user, item_id="film-0")
    port = free_port()
    stack.start_serve(port, api_read_keys=READ, api_write_keys=WRITE)
    url = f"http://127.0.0.1:{port}"
    with RecommendationClient(url, READ) as client:
        client.wait_ready(60)
        rec = _until("the user's list", lambda: client.latest(user))
        assert rec.items
        # Real windows: the worker publishes one a second in tests.
        _until("metrics windows", lambda: len(client.health()["series"]) >= 2)

    browser.get(f"{url}/ui?key={READ}")  # the key goes into a cookie; the URL drops it
    assert browser.current_url == f"{url}/ui"
    browser.find_element(By.ID, "user-id").send_keys(user)
    browser.find_element(By.CSS_SELECTOR, "#user-form button").click()
    rows = _until(
        "the list in the page", lambda: browser.find_elements(By.CSS_SELECTOR, "tr.rec-item")
    )
    shown = [r.get_attribute("data-item-id") for r in rows]
    assert shown == rec.item_ids
    assert "Film number" in rows[0].text  # titles from the catalog
    assert "after a view event" in browser.find_element(By.ID, "user-meta").text

    browser.find_element(By.ID, "user-id").clear()
    browser.find_element(By.ID, "user-id").send_keys("nobody-" + user)
    browser.find_element(By.CSS_SELECTOR, "#user-form button").click()
    error = _until(
        "the unknown-user message", lambda: browser.find_element(By.ID, "user-error").text
    )
    assert "no list for this user yet" in error

    browser.find_element(By.ID, "tab-health").click()

    def drawn(chart: str) -> int:
        points = browser.find_element(By.ID, chart).get_attribute("data-points")
        return int(points or 0)

    _until("the throughput chart", lambda: drawn("chart-throughput") >= 2)
    _until("the latency chart", lambda: drawn("chart-latency") >= 2)
    meta = browser.find_element(By.ID, "health-meta").text
    assert "windows in the last" in meta and "process" in meta
    legend = browser.find_element(By.ID, "legend-latency").text
    assert "p50" in legend and "p99" in legend
