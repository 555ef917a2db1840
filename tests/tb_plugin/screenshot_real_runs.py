"""The README's pictures of real runs: the method and analysis pickers, the methods x epochs grid, the
import of a shared finding, and a revision (reveal to revise), in a real TensorBoard and headless Chromium.

``LOGDIR`` holds the runs that ``tests/tb_plugin/real_runs.py`` and ``examples/clever_hans_digits.py
--revise rrclarc`` wrote (see real_runs.py)::

    python tests/tb_plugin/screenshot_real_runs.py runs/plugin_pictures [--out docs/images]

Each picture is checked for what it must show before it is written (a picture of an empty panel fails).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_plugin_browser import ARGS, CHROMIUM, IMAGES, Tab, _free_port, _open  # noqa: E402

from lrp_lightning.store import RunStore  # noqa: E402

METHODS_RUN = "methods/version_0"
REVISED_RUN = "revise/rrclarc/version_0"


def start_tensorboard(logdir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=2) as response:
                if json.loads(response.read()).get("lrp", {}).get("enabled"):
                    return process, base
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    process.kill()
    raise SystemExit("TensorBoard did not start:\n" + log.read_text()[-3000:])


def stack(parts: list[bytes], path: Path, crop: list[int | None] | None = None) -> None:
    """Element screenshots one above the other (each cut to ``crop[i]`` pixels high when given)."""
    pictures = [Image.open(io.BytesIO(p)).convert("RGB") for p in parts]
    crop = crop or [None] * len(pictures)
    pictures = [p.crop((0, 0, p.width, min(p.height, c or p.height))) for p, c in zip(pictures, crop)]
    picture = Image.new("RGB", (max(p.width for p in pictures), sum(p.height + 8 for p in pictures) - 8), "#f5f5f5")
    top = 0
    for part in pictures:
        picture.paste(part, (0, top))
        top += part.height + 8
    picture.save(path, optimize=True)
    print(f"wrote {path} ({picture.width}x{picture.height})")


def methods_pictures(browser, base: str, logdir: Path, out: Path) -> None:
    """plugin-methods.png: the Method and Analysis pickers above the open sample's methods x epochs grid;
    plugin-import.png: a shared finding's samples imported as the selection."""
    store = RunStore(logdir / METHODS_RUN)
    probe = store.probe_table().to_pylist()
    marked = [row["sample_id"] for row in probe if row.get("watermarked_class_3")]
    sample = marked[0]  # a watermarked 3: the methods disagree on the corner
    methods = store.methods
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run={METHODS_RUN}&p.lrp.sample={sample}")
    tab = Tab(page).attach()
    frame = tab.frame
    frame.select_option("#method", methods[1])
    tab.idle()
    frame.select_option("#analysis", "coarse")
    tab.idle()
    frame.wait_for_selector("#methods-grid:not(.hidden) img")
    tab.images_loaded("#methods-grid img")
    rows = frame.eval_on_selector_all("#methods-grid tr[data-method]", "rows => rows.map(r => r.dataset.method)")
    assert rows == methods, rows
    assert frame.input_value("#method") == methods[1] and frame.input_value("#analysis") == "coarse"
    tab.images_loaded("#gallery img")
    stack(
        [frame.locator(".toolbar").screenshot(), frame.locator("#methods-grid").screenshot()],
        out / "plugin-methods.png",
    )
    # Someone shares the watermark finding's samples (the /findings answer, as JSON); Import… selects them.
    frame.select_option("#analysis", "default")
    tab.idle()
    findings = json.loads(urllib.request.urlopen(f"{base}/data/plugin/lrp/findings?run={METHODS_RUN}").read())
    found = [f for f in findings["findings"] if f["category"] == "class_3"]
    assert found, [f["finding_id"] for f in findings["findings"]]
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / "watermark_finding.json"
        shared.write_text(
            json.dumps({"findings": [{"finding_id": found[0]["finding_id"], "member_ids": found[0]["member_ids"]}]})
        )
        frame.set_input_files("#import-selection", str(shared))
        frame.wait_for_function(f"() => lrp.selectedIds().size === {len(found[0]['member_ids'])}")
    frame.wait_for_selector("#status:has-text('Imported')")
    tab.idle()
    tab.images_loaded("#gallery img")
    stack(
        [frame.locator("#status").screenshot(), frame.locator(".gallery-panel").screenshot()],
        out / "plugin-import.png",
        crop=[None, 420],
    )
    context.close()
    assert not problems, problems


def revision_picture(browser, base: str, out: Path) -> None:
    """plugin_revision.png: the findings panel of the digits demo's RR-ClArC run."""
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run={REVISED_RUN}")
    tab = Tab(page).attach()
    block = tab.frame.locator("#findings .finding .finding-revision").first
    block.wait_for(timeout=90_000)
    assert block.get_attribute("data-method") == "rrclarc"
    assert block.locator("svg.chart").count() == 2 and block.locator("line.mark").count() == 2
    tab.images_loaded("#findings .finding-strip img")
    tab.frame.locator(".findings-panel").screenshot(path=str(out / "plugin_revision.png"))
    print(f"wrote {out / 'plugin_revision.png'}")
    context.close()
    assert not problems, problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--out", type=Path, default=IMAGES)
    options = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        process, base = start_tensorboard(options.logdir, Path(tmp) / "tensorboard.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                if (options.logdir / METHODS_RUN).exists():
                    methods_pictures(browser, base, options.logdir, options.out)
                if (options.logdir / REVISED_RUN).exists():
                    revision_picture(browser, base, options.out)
                browser.close()
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
