"""A real browser (Debian's Chromium, driven by Selenium): log into the admin, open the outbox
health page, retry a dead delivery, and see it succeed. A screenshot goes to test-artifacts/."""

import shutil
import tempfile
from pathlib import Path

import pytest

from outbox.models import Delivery
from tasks_app import services

from . import subscribers as test_subscribers
from .conftest import settle
from .factories import TaskFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
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
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_retry_a_dead_delivery_from_the_outbox_health_page(
    browser, live_server, celery_worker, use_subscribers
):
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
