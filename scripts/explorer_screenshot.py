"""The README's screenshot of `zspace explore`: trains and analyses an AE and a VAE (or takes analysed runs),
serves them, drives Debian's headless Chromium to a telling state and saves the page as a PNG.

    # Fashion-MNIST (the README's figure): an AE and a VAE of configs/demo-fashion.toml on 20,000 images
    python scripts/explorer_screenshot.py --set data_dir=/path/to/fashion-mnist --set subset=20000 \
        --set epochs=8 --out docs/explorer.png
    # runs you already have (analysed or not)
    python scripts/explorer_screenshot.py runs/fashion-ae runs/fashion-vae --out explorer.png

The state: two points picked and interpolated (A -> B: the first class to the last), a third point picked
(class 3) and moved along the first two principal directions by the sliders, ten N(0, I) samples ringed on
the map, one point hovered (class 8). Needs the
packages `chromium` and `chromium-driver` (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
VIEWPORT = (1280, 800)
WAIT_S = 60
DEFAULT_SETS = ["subset=6000", "epochs=3", "z_dim=12", "verbose=0"]
"""Training overrides before the user's --set ones: a small run that trains in about a minute on 2 cores."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="analysed runs to show (default: train an AE and a VAE)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-fashion.toml",
                        help="run config the two trained runs start from (default: configs/demo-fashion.toml)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"training override, after {' '.join(DEFAULT_SETS)} (repeatable)")
    parser.add_argument("--work", type=Path, help="folder for the trained runs (default: a temporary one)")
    parser.add_argument("--tsne-size", type=int, default=2000, help="points on the map (t-SNE subset)")
    parser.add_argument("--map-run", type=int, default=-1,
                        help="which run's map is shown, an index into the runs (default: the last, the VAE)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer.png", help="the PNG written")
    return parser.parse_args(argv)


def train_pair(config: Path, sets: list[str], work: Path) -> list[Path]:
    """Trains an AE and a VAE from ``config`` with the overrides into ``work/ae`` and ``work/vae``."""
    from zspace.config import RunConfig, parse_overrides
    from zspace.training import train

    runs = []
    for kind in ("ae", "vae"):
        overrides = {**parse_overrides(DEFAULT_SETS), **parse_overrides(sets),  # the user's --set win
                     **parse_overrides([f"kind={kind}", f"run_dir={work / kind}"])}
        started = time.monotonic()
        train(RunConfig.load(config).with_overrides(overrides))
        print(f"trained {work / kind} in {time.monotonic() - started:.0f} s")
        runs.append(work / kind)
    return runs


def analyse(runs: list[Path], tsne_size: int) -> None:
    """Analyses each run that has no analysis yet (one t-SNE of ``tsne_size`` points: the map)."""
    from zspace.analysis import analyze_run
    from zspace.config import AnalysisConfig

    for run in runs:
        if not (run / "analysis.npz").is_file():
            analyze_run(run, AnalysisConfig(k_max=10, kmeans_seeds=(0,), tsne_sizes=(tsne_size,)))
            print(f"analysed {run}")


def chromium(profile: Path):
    """Headless Debian Chromium through Debian's chromedriver (given by path: Selenium Manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
    return driver


def drive(driver, url: str, map_run: int) -> bytes:
    """Brings the page to the README's state; returns the screenshot's PNG bytes."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def until(script: str, *args):
        return WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script, *args))

    def move_to(i: int) -> ActionChains:
        pixel = driver.execute_script("return window.zspaceExplorer.pointPixel(arguments[0])", i)
        canvas = driver.find_element(By.ID, "map")
        offset = (pixel["px"] - canvas.size["width"] / 2, pixel["py"] - canvas.size["height"] / 2)
        return ActionChains(driver).move_to_element_with_offset(canvas, *offset)

    def pick(i: int) -> None:
        shown = driver.execute_script("return window.zspaceExplorer.state.stats.decodeShown")
        move_to(i).click().perform()
        until("return window.zspaceExplorer.state.stats.decodeShown > arguments[0]", shown)
        until("return window.zspaceExplorer.idle()")

    def point_of_colour(colour: int, rank: int = 0) -> int:
        """The map point of colour ``colour`` closest to that colour's middle (rank 0), or the rank-th closest."""
        return driver.execute_script("""const [colour, rank] = arguments, map = window.zspaceExplorer.state.map;
            const ids = map.color.map((c, i) => [c, i]).filter(([c]) => c === colour).map(([, i]) => i);
            const mx = ids.reduce((s, i) => s + map.x[i], 0) / ids.length;
            const my = ids.reduce((s, i) => s + map.y[i], 0) / ids.length;
            ids.sort((p, q) => Math.hypot(map.x[p] - mx, map.y[p] - my) - Math.hypot(map.x[q] - mx, map.y[q] - my));
            return ids[Math.min(rank, ids.length - 1)];""", colour, rank)

    def set_slider(element_id: str, value: float) -> None:
        driver.execute_script("const s = document.getElementById(arguments[0]); s.value = String(arguments[1]);"
                              "s.dispatchEvent(new Event('input'));", element_id, value)
        until("return window.zspaceExplorer.idle()")

    driver.get(url)
    until("return document.body.dataset.ready !== undefined")
    runs = driver.execute_script("return window.zspaceExplorer.state.runs.length")
    if map_run % runs:
        Select(driver.find_element(By.ID, "run-select")).select_by_index(map_run % runs)
        until("return window.zspaceExplorer.state.run === arguments[0] && window.zspaceExplorer.state.map",
              map_run % runs)
    n_colours = driver.execute_script("return (window.zspaceExplorer.state.map.color_names || []).length")
    first, last = (0, max(n_colours - 1, 0)) if n_colours else (None, None)
    a = point_of_colour(first) if n_colours else 0
    b = point_of_colour(last) if n_colours else 1
    pick(a)
    driver.find_element(By.ID, "set-a").click()
    pick(b)
    driver.find_element(By.ID, "set-b").click()
    driver.find_element(By.ID, "interpolate").click()
    until("const s = document.getElementById('strip'); return !s.hidden && s.complete && s.naturalWidth > 0")
    driver.find_element(By.ID, "prior-sample").click()
    until("return document.querySelectorAll('#prior-strip img').length > 0")
    pick(point_of_colour(min(3, n_colours - 1)) if n_colours else 2)  # Fashion-MNIST: a dress
    set_slider("pc-0", 0.8)
    set_slider("pc-1", -0.6)
    until("""return [...document.querySelectorAll('img')].filter((i) => !i.hidden && i.src)
                     .every((i) => i.complete && i.naturalWidth > 0)""")
    hovered = point_of_colour(8 if n_colours > 8 else 0, rank=3)  # Fashion-MNIST: a bag
    move_to(hovered).perform()
    until("""const img = document.getElementById('tooltip-img');
             return !document.getElementById('tooltip').hidden && img.complete && img.naturalWidth > 0""")
    time.sleep(0.3)  # let the last paint land
    return driver.get_screenshot_as_png()


def small_png(png: bytes) -> bytes:
    """The screenshot as a 256-colour PNG (a UI screenshot has few colours; the README figure stays small)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zspace-screenshot-") as scratch:
        runs = args.runs or train_pair(args.config, args.sets, args.work or Path(scratch))
        analyse(runs, args.tsne_size)
        from zspace.explore import build_app, open_runs, serving

        with serving(build_app(open_runs([str(run) for run in runs]), "127.0.0.1")) as port:
            driver = chromium(Path(scratch) / "chromium-profile")
            try:
                png = small_png(drive(driver, f"http://127.0.0.1:{port}/", args.map_run))
            finally:
                driver.quit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({len(png) // 1024} KiB)")


if __name__ == "__main__":
    main()
