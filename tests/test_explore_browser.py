"""The explorer page as a person uses it: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, against a real ``zspace explore`` server (a tiny digits AE and VAE, trained and analysed once).

Nothing is downloaded: Selenium gets the driver's and the browser's paths, so Selenium Manager never runs
(the ``browser`` fixture makes it fail loudly if it did). Without the two Debian packages the module is
skipped with one line saying what to install.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import numpy as np

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip("the explorer's browser tests need Chromium: apt-get install chromium chromium-driver",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.common.selenium_manager import SeleniumManager  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from conftest import train_ae_and_vae  # noqa: E402

WAIT_S = 20
"""Longest wait for the page to react (decodes take milliseconds; this only bounds a broken page)."""
VIEWPORT = (1280, 800)
MARK_RGB = (0xC2, 0x18, 0x5B)
"""The colour explorer.js rings prior samples with on the map."""


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny digits AE and VAE, each analysed with a small t-SNE (300 points on the map); the VAE's analysis
    has two attributes (the analysis of a run with a dataset given)."""
    from zspace import Run
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig
    from zspace.data import load_dataset

    ae, vae = train_ae_and_vae(tmp_path_factory.mktemp("explore-browser"), epochs=2)
    settings = AnalysisConfig(k_max=4, kmeans_seeds=(0,), tsne_sizes=(300,), pca_subset=300)
    analyze_run(ae, settings)
    analyze_run(Run(vae, dataset=with_attributes(load_dataset("digits"))), settings)  # attribute sliders
    return ae, vae


ATTRIBUTES = ("odd", "large")


def with_attributes(data):
    """The digits with two binary attributes made from their labels: odd, and 5 or more (+1 / -1, as CelebA's)."""
    attributes = np.stack([data.y_train % 2 == 1, data.y_train >= 5], axis=1)
    return dataclasses.replace(data, attribute_names=ATTRIBUTES, a_train=np.where(attributes, 1, -1).astype(np.int8))


@pytest.fixture(scope="module")
def url(runs):
    """The explorer of the AE and the VAE (run 0 = ae, run 1 = vae), served for the whole module."""
    from zspace.explore import build_app, open_runs, serving

    with serving(build_app(open_runs([str(p) for p in runs]), "127.0.0.1"), timeout=WAIT_S) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium at 1280x800 that keeps its console log; Selenium Manager must not run."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    def no_download(*_args, **_kwargs):
        raise AssertionError("Selenium Manager ran (it may download a driver); the test gives it the paths")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", no_download)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # The window size includes no browser chrome in headless mode, but pin the viewport anyway.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, url, tmp_path):
    """The explorer freshly loaded, its map drawn; afterwards a screenshot goes into the test's tmp_path."""
    browser.get_log("browser")  # drop what earlier tests left
    browser.get(url)
    wait_for(browser, "return document.body.dataset.ready !== undefined")
    yield browser
    browser.save_screenshot(str(tmp_path / "explorer.png"))


# ------------------------------------------------------------------------------------------------ helpers

def wait_for(driver, script: str, *args):
    """Waits until the JavaScript expression ``script`` returns something truthy; returns it."""
    return WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script, *args))


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def status_text(driver) -> str:
    return driver.find_element(By.ID, "status").text


PIXELS_JS = """
const pixels = (source) => {  // RGBA of an <img> or ImageBitmap at its natural size, base64
  const canvas = document.createElement("canvas");
  canvas.width = source.naturalWidth || source.width;
  canvas.height = source.naturalHeight || source.height;
  const context = canvas.getContext("2d");
  context.drawImage(source, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let text = ""; for (let i = 0; i < data.length; i += 1) text += String.fromCharCode(data[i]);
  return `${canvas.width}x${canvas.height}:${btoa(text)}`;
};
"""


def shown_pixels(driver, element_id: str) -> str:
    """What an <img> shows: its size and RGBA pixels, read back inside the page."""
    return driver.execute_script(PIXELS_JS + "return pixels(document.getElementById(arguments[0]));", element_id)


def decoded_pixels(driver, run: int, z: list[float]) -> str:
    """The pixels of the server's decode of z (fetched by the page, so through the page's origin)."""
    return driver.execute_async_script(PIXELS_JS + """const [run, z, done] = arguments;
        fetch(`/api/runs/${run}/decode`, {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({z})})
          .then((r) => r.blob()).then(createImageBitmap).then((bitmap) => done(pixels(bitmap)))
          .catch((err) => done(`error: ${err}`));""", run, z)


def point_offset(driver, i: int) -> tuple[float, float]:
    """Offset of map point i from the canvas centre (what ActionChains' move_to_element_with_offset takes)."""
    pixel = driver.execute_script("return window.zspaceExplorer.pointPixel(arguments[0])", i)
    canvas = driver.find_element(By.ID, "map")
    return pixel["px"] - canvas.size["width"] / 2, pixel["py"] - canvas.size["height"] / 2


def decodes_shown(driver) -> int:
    return driver.execute_script("return window.zspaceExplorer.state.stats.decodeShown")


def click_point(driver, i: int) -> None:
    """Clicks map point i and waits for its decode to be shown."""
    before = decodes_shown(driver)
    canvas = driver.find_element(By.ID, "map")
    ActionChains(driver).move_to_element_with_offset(canvas, *point_offset(driver, i)).click().perform()
    wait_for(driver, "return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", before)
    wait_idle(driver)


def wait_idle(driver) -> None:
    wait_for(driver, "return window.zspaceExplorer.idle()")


def canvas_pixels(driver) -> list[int]:
    """The map canvas as flat RGBA bytes."""
    encoded = driver.execute_script(
        """const c = document.getElementById("map");
        const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let text = ""; for (let i = 0; i < data.length; i += 1) text += String.fromCharCode(data[i]);
        return btoa(text);""")
    return base64.b64decode(encoded)


def count_colour(rgba: bytes, rgb: tuple[int, int, int]) -> int:
    return sum(1 for i in range(0, len(rgba), 4) if tuple(rgba[i:i + 3]) == rgb)


# ------------------------------------------------------------------------------------------------ tests

def test_map_hover_shows_the_real_image_and_everything_is_served_locally(page, url):
    counts = page.execute_script("return window.zspaceExplorer.state.map.index.length")
    assert counts == 300  # the t-SNE subset
    legend = [item.text for item in page.find_elements(By.CSS_SELECTOR, "#legend li")]
    assert [entry.split(" ")[0] for entry in legend] == [str(d) for d in range(10)]
    pixels = canvas_pixels(page)
    assert count_colour(pixels, (255, 255, 255)) < len(pixels) // 4  # points drawn on the white map

    ActionChains(page).move_to_element_with_offset(page.find_element(By.ID, "map"), *point_offset(page, 7)).perform()
    wait_for(page, """const t = document.getElementById("tooltip"), img = document.getElementById("tooltip-img");
                      return !t.hidden && img.complete && img.naturalWidth > 0""")
    point = page.execute_script("return window.zspaceExplorer.state.map.index[7]")
    assert page.find_element(By.ID, "tooltip-img").get_attribute("src") == f"{url}api/runs/0/image/{point}"
    assert page.find_element(By.ID, "tooltip-text").text.startswith(f"#{point}")

    # offline: every script, style and image came from the explorer itself
    resources = page.execute_script("return performance.getEntriesByType('resource').map((r) => r.name)")
    assert resources and all(name.startswith(url) for name in resources), resources
    assert console_errors(page) == []


def test_click_decodes_and_sliders_move_the_image(page):
    assert not page.find_element(By.ID, "decoded").is_displayed()
    click_point(page, 20)
    assert page.find_element(By.ID, "decoded").is_displayed()
    picked = shown_pixels(page, "decoded")
    assert picked.startswith("192x192:")  # enlarged 8x8 digits
    assert "nearest" in page.find_element(By.ID, "picked-info").text

    slider = page.find_element(By.ID, "pc-0")
    shown = decodes_shown(page)
    for _ in range(20):  # the keyboard moves a slider too: 20 steps of 0.05 = +1 sigma
        slider.send_keys(Keys.ARROW_RIGHT)
    wait_for(page, "return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", shown)
    wait_idle(page)
    assert page.find_element(By.CSS_SELECTOR, "#pc-0 + output").text == "+1.00 σ"
    moved = shown_pixels(page, "decoded")
    assert moved != picked

    shown = decodes_shown(page)
    page.find_element(By.ID, "reset-sliders").click()
    wait_for(page, "return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", shown)
    wait_idle(page)
    assert shown_pixels(page, "decoded") == picked  # back at z0: the same decode
    assert console_errors(page) == []


def test_keyboard_alone_picks_a_spot(page):
    page.find_element(By.ID, "map").send_keys(Keys.ARROW_LEFT, Keys.ARROW_UP, Keys.ENTER)
    wait_for(page, "return window.zspaceExplorer.state.stats.decodeShown > 0")
    assert page.find_element(By.ID, "decoded").is_displayed()
    assert page.find_element(By.ID, "a-info").text == "A: —"
    page.find_element(By.ID, "set-a").send_keys(Keys.ENTER)  # buttons answer the keyboard
    nearest = page.execute_script("return window.zspaceExplorer.state.pick.nearest")
    assert page.find_element(By.ID, "a-info").text.split() == ["A:", "near", f"#{nearest}"]
    assert console_errors(page) == []


def test_fast_sliding_keeps_one_decode_in_flight_and_ends_on_the_latest(page):
    click_point(page, 3)
    sent = page.execute_script("return window.zspaceExplorer.state.stats.decodeSent")
    # 40 slider moves in one go, as fast as a dragging hand can't: they must not queue 40 requests
    page.execute_script("""const s = document.getElementById("pc-1");
        for (let i = 1; i <= 40; i += 1) { s.value = String(-2 + i * 0.1); s.dispatchEvent(new Event("input")); }""")
    wait_idle(page)
    requests = page.execute_script("return window.zspaceExplorer.state.stats.decodeSent") - sent
    assert 1 <= requests <= 2  # the first move, then only the latest (value +2)
    latest = decoded_pixels(page, 0, page.execute_script("return window.zspaceExplorer.currentZ()"))
    assert page.find_element(By.CSS_SELECTOR, "#pc-1 + output").text == "+2.00 σ"
    assert shown_pixels(page, "decoded") == latest
    assert console_errors(page) == []


def test_a_busy_server_retries_only_the_latest_state(page):
    click_point(page, 11)
    # The server answers 503 when too many decodes wait; make the next two answers 503 to see what the page does.
    page.execute_script("""const real = window.fetch; let busy = 2; window.sentBodies = [];
        window.fetch = (url, options) => {
          if (String(url).endsWith("/decode")) {
            window.sentBodies.push(JSON.parse(options.body).z);
            if (busy > 0) { busy -= 1; return Promise.resolve(new Response(
              JSON.stringify({error: "busy"}), {status: 503, headers: {"Content-Type": "application/json"}})); }
          }
          return real(url, options);
        };
        const s = document.getElementById("pc-0");
        for (const v of ["0.5", "1", "1.5"]) { s.value = v; s.dispatchEvent(new Event("input")); }""")
    wait_for(page, "return window.sentBodies.length >= 3")
    wait_idle(page)
    bodies = page.execute_script("return window.sentBodies")
    final = page.execute_script("return window.zspaceExplorer.currentZ()")
    assert len(bodies) == 3  # 0.5 (busy), then the latest (1.5) only: busy once more, then decoded
    assert bodies[1] == bodies[2] == final and bodies[0] != final
    assert "failed" not in status_text(page)
    assert console_errors(page) == []


def test_interpolation_strip_has_one_tile_per_step(page):
    click_point(page, 0)
    page.find_element(By.ID, "set-a").click()
    click_point(page, 150)
    page.find_element(By.ID, "set-b").click()
    steps = page.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("5")
    page.find_element(By.ID, "spherical").click()
    page.find_element(By.ID, "interpolate").click()
    wait_for(page, """const s = document.getElementById("strip");
                      return !s.hidden && s.complete && s.naturalWidth > 0""")
    width, height = page.execute_script(
        "const s = document.getElementById('strip'); return [s.naturalWidth, s.naturalHeight]")
    gaps, rest = divmod(width - 5 * height, 4)  # five square tiles, maybe a few pixels apart
    assert rest == 0 and 0 <= gaps <= height // 8, (width, height)
    assert "Spherical interpolation, 5 steps" in status_text(page)
    assert console_errors(page) == []


def test_prior_samples_are_marked_on_the_map(page):
    before = count_colour(canvas_pixels(page), MARK_RGB)
    page.find_element(By.ID, "prior-sample").click()
    wait_for(page, "return document.querySelectorAll('#prior-strip img').length === 10")
    wait_for(page, "return [...document.querySelectorAll('#prior-strip img')].every((i) => i.complete)")
    assert before == 0 and count_colour(canvas_pixels(page), MARK_RGB) > 50
    summary = page.find_element(By.ID, "prior-summary").text
    spacing = page.execute_script("return window.zspaceExplorer.state.prior.reference_distance")
    assert "samples from N(0, I)" in summary and f"typically {spacing:.2f} apart" in summary
    distinct = len(set(page.execute_script("return window.zspaceExplorer.state.prior.neighbours")))
    assert f"({distinct} distinct images:" in summary  # stacked rings are said, not hidden

    Select(page.find_element(By.ID, "prior-dist")).select_by_value("uniform")
    wait_for(page, "return document.getElementById('prior-summary').textContent.includes('uniform')")
    r_slider = page.find_element(By.ID, "prior-r")
    assert r_slider.is_displayed()
    r_max = float(r_slider.get_attribute("max"))
    page.execute_script("arguments[0].value = arguments[0].max; arguments[0].dispatchEvent(new Event('input'))",
                        r_slider)
    wait_for(page, "return document.getElementById('prior-summary').textContent.includes(arguments[0])",
             f"r = {r_max:.2f}")
    # a sample picked from the strip becomes the decoded z
    shown = decodes_shown(page)
    page.find_element(By.CSS_SELECTOR, "#prior-strip button").click()
    wait_for(page, "return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", shown)
    assert page.find_element(By.ID, "picked-info").text.startswith("Prior sample 1")
    assert console_errors(page) == []


def test_two_runs_side_by_side_and_the_run_selector(page):
    click_point(page, 42)
    wait_for(page, """return [...document.querySelectorAll("#compare img")].length === 2 * (1 + 5)
                      && [...document.querySelectorAll("#compare img, #compare-info img")]
                         .every((i) => i.complete && i.naturalWidth > 0)""")
    rows = page.find_elements(By.CSS_SELECTOR, ".compare-run")
    names = [row.find_element(By.CLASS_NAME, "compare-name").text.split("\n") for row in rows]
    assert names == [["ae", "AE, z 3"], ["vae", "VAE, z 3"]]
    point = page.execute_script("return window.zspaceExplorer.state.pick.nearest")
    decodes = [row.find_element(By.CLASS_NAME, "compare-decoded").get_attribute("src") for row in rows]
    assert decodes[0].endswith(f"/api/runs/0/reconstruction/{point}")
    assert decodes[1].endswith(f"/api/runs/1/reconstruction/{point}")

    ae_map = canvas_pixels(page)
    Select(page.find_element(By.ID, "run-select")).select_by_visible_text("vae (VAE)")
    wait_for(page, "const s = window.zspaceExplorer.state; return s.run === 1 && s.map !== null")
    assert canvas_pixels(page) != ae_map  # the VAE's own t-SNE
    assert "VAE" in page.find_element(By.ID, "run-info").text
    assert console_errors(page) == []


def test_a_failed_request_shows_its_reason_on_the_page(page):
    click_point(page, 5)
    # A z of the wrong length, as a broken page or a hand-made request would send: the server's one-line 422
    # reason must reach the status line, not only the console.
    page.execute_script("""const real = window.fetch;
        window.fetch = (url, options) => String(url).endsWith("/decode")
          ? real(url, {...options, body: JSON.stringify({z: [0, 0]})}) : real(url, options);
        const s = document.getElementById("pc-0"); s.value = "1"; s.dispatchEvent(new Event("input"));""")
    wait_for(page, "return document.getElementById('status').classList.contains('error')")
    assert status_text(page).startswith("decoding failed: 422 ")
    assert "z" in status_text(page)
    assert all("422" in message for message in console_errors(page))  # the browser's own network line only


def test_attribute_sliders_move_along_the_attribute_vectors(page, runs):
    from zspace import Run

    Select(page.find_element(By.ID, "run-select")).select_by_visible_text("vae (VAE)")
    wait_for(page, "const s = window.zspaceExplorer.state; return s.run === 1 && s.map !== null")
    click_point(page, 7)
    labels = [page.find_element(By.CSS_SELECTOR, f"label[for='attr-{i}']").text for i in range(len(ATTRIBUTES))]
    assert labels == list(ATTRIBUTES)
    picked = shown_pixels(page, "decoded")
    z0 = np.array(page.execute_script("return window.zspaceExplorer.state.pick.z0"))
    shown = decodes_shown(page)
    page.execute_script("""const s = document.getElementById("attr-1");
        s.value = "1.5"; s.dispatchEvent(new Event("input"));""")
    wait_for(page, "return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", shown)
    wait_idle(page)
    vector = np.array(page.execute_script("return window.zspaceExplorer.state.directions.attributes.large"))
    np.testing.assert_allclose(vector, Run(runs[1]).load_analysis().arrays["attribute_vectors"][1], rtol=1e-6)
    z = np.array(page.execute_script("return window.zspaceExplorer.currentZ()"))
    np.testing.assert_allclose(z, z0 + 1.5 * vector, rtol=1e-6, atol=1e-6)  # z0 + t * the "large" vector
    assert shown_pixels(page, "decoded") == decoded_pixels(page, 1, z.tolist()) != picked
    assert console_errors(page) == []
