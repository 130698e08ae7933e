"""The built documentation site (bash scripts/docs.sh, into site/) as a reader's browser shows it: headless
Chromium (Debian's chromium and chromium-driver, driven by selenium) opens the notebook pages, and every image on
them has loaded. A screenshot of the quickstart page is kept as an artifact (build/docs/quickstart.png)."""
import os
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SITE = os.environ.get("C3_SITE_DIR", os.path.join(ROOT, "site"))
SCREENSHOT = os.path.join(ROOT, "build", "docs", "quickstart.png")
# Images each notebook page must show (its plots); the official checkpoint's page has none without the checkpoint.
PAGES = {"quickstart": 3, "ratio_sweep": 4, "long_documents": 2, "pretrained_cascade": 1}


def executable(*names):
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    raise AssertionError(f"none of {names} is installed: bash scripts/setup.sh --test installs them")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = executable("chromium", "chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable("chromedriver")))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, name):
    path = os.path.join(SITE, "notebooks", f"{name}.html")
    assert os.path.exists(path), f"{path} is missing: build the site with bash scripts/docs.sh"
    browser.get("file://" + path)
    return browser.execute_script(
        "return Array.from(document.images).map(image => [image.currentSrc || image.src, image.complete,"
        " image.naturalWidth]);")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_image_on_the_page_loads(browser, name):
    images = open_page(browser, name)
    broken = [source for source, complete, width in images if not (complete and width > 0)]
    assert not broken, f"images that did not load on {name}: {broken}"
    plots = [source for source, _, _ in images if "/_images/" in source]
    assert len(plots) >= PAGES[name], f"{name} shows {len(plots)} plots: {images}"


def test_screenshot_of_the_quickstart_page(browser):
    open_page(browser, "quickstart")
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1280, min(max(height, 1000), 12000))
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    assert browser.save_screenshot(SCREENSHOT)
    assert os.path.getsize(SCREENSHOT) > 10_000
    print(f"\nscreenshot of the quickstart page: {SCREENSHOT}")
