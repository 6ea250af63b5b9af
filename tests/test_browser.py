"""A real browser (Debian's Chromium, driven by Selenium): log into the admin, open the outbox
health page, retry a dead delivery, and see it succeed. A screenshot goes to test-artifacts/.

Without a browser that starts, the test skips, saying why; under CI=true it fails instead, so
a CI run cannot go green without it (.ci/run installs Debian's chromium and chromium-driver)."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from outbox.models import Delivery
from tasks_app import services

from . import subscribers as test_subscribers
from .conftest import settle
from .factories import TaskFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def no_browser(reason: str) -> NoReturn:
    """Skip, saying why; under CI=true, fail: CI must not pass without the browser test."""
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true and the real-browser test cannot run: {reason}. "
            "Install Debian's chromium and chromium-driver (.ci/run does).",
            pytrace=False,
        )
    pytest.skip(f"{reason} (install Debian's chromium and chromium-driver; .ci/run does)")


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    if missing:
        no_browser(f"{' and '.join(missing)} not found on PATH")

    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1280,1400",
    ):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except (WebDriverException, OSError) as exc:
        shutil.rmtree(profile, ignore_errors=True)
        no_browser(f"{CHROMIUM} with {CHROMEDRIVER} did not start: {type(exc).__name__}: {exc}".strip())
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_retry_a_dead_delivery_from_the_outbox_health_page(
    browser: Any, live_server: Any, celery_worker: Any, use_subscribers: Callable[..., None]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    use_subscribers("fixable")
    UserFactory(username="operator", is_staff=True, is_superuser=True)
    owner = UserFactory()
    services.complete_task(TaskFactory(owner=owner), by=owner)
    settle(lambda: Delivery.objects.filter(subscriber="fixable", status="dead").exists())

    browser.get(f"{live_server.url}/admin/login/?next=/admin/outbox/delivery/health/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery staple")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # click() returns before the next page has loaded: wait for it.
    WebDriverWait(browser, 10).until(expected_conditions.title_contains("Outbox health"))
    assert "fixable: 1 dead" in browser.find_element(By.ID, "dead").text
    assert browser.find_element(By.ID, "throughput").tag_name == "svg"

    test_subscribers.healed.set()  # the operator fixed the cause; now retry
    browser.find_element(By.CSS_SELECTOR, "input.retry-one").click()
    WebDriverWait(browser, 10).until(
        expected_conditions.text_to_be_present_in_element(
            (By.CSS_SELECTOR, "ul.messagelist"), "1 dead deliveries re-dispatched."
        )
    )
    settle(lambda: Delivery.objects.get(subscriber="fixable").status == "succeeded")
    browser.refresh()
    assert browser.find_element(By.ID, "no-dead").text == "No dead deliveries."
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "outbox-health.png"))
