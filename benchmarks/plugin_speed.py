"""Speed of the TensorBoard plugin "lrp" on a large run, in a real TensorBoard and headless Chromium.

Builds (in a temporary logdir) a synthetic run of 50 epochs x 1000 probe samples x 3 attribution methods
(``--methods``) with 28x28 heatmaps
and analysis tables for every epoch, and a run of one epoch with a 50,000-point embedding; starts
``tensorboard --logdir`` on 127.0.0.1 and measures:

* tab interactive: from navigating to TensorBoard's ``/#lrp`` until the tab has drawn its points and
  built its gallery (``#lrp-app[data-ready][data-loading=false]``), first visit (cold caches) and
  the median of later visits (each in a fresh browser context); also on the page's own clocks (no
  polling delay), split into TensorBoard's page until the tab's frame starts and the frame itself;
* the floor: the same for a tab whose page does nothing (``tensorboard_floor.py`` adds it to the same
  TensorBoard), opened after each visit of the LRP tab, so that both share the machine's load;
* epoch switch: from asking for another epoch until its points, clusters and gallery are on screen
  (two animation frames after the data arrived), on epochs not seen before (cold server caches);
  also until every gallery image has loaded;
* bytes on the wire for the 50,000-point embedding (gzip, as browsers request it) and unpacked.

Targets (issue 6): interactive <= 2 s, epoch switch <= 300 ms, 50k-point embedding <= 1 MB.

Building the runs takes most of a minute at full size; ``--cache DIR`` keeps them in ``DIR`` (one folder
per size, built once) so that later runs go straight to the measurements. The plugin's caches live in
TensorBoard's process, which every run starts afresh, so a cached logdir still measures cold server caches.

Usage::

    python benchmarks/plugin_speed.py [--epochs 50] [--samples 1000] [--methods 3] [--points 50000]
        [--cache DIR] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "tb_plugin"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synthetic_runs import build_run  # noqa: E402
from tensorboard_floor import FLOOR_NAME, FLOOR_READY  # noqa: E402

FLOOR_SCRIPT = ROOT / "benchmarks" / "tensorboard_floor.py"

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN = "bench/version_0"
BIG = "big/version_0"
BUILT = ".built-2"
"""Marker file of a complete cached logdir (written last, so an interrupted build is built again). Version 2:
parts with a row group per method; a logdir cached before has none, so it is built again."""
LRP_READY = "#lrp-app[data-ready=true][data-loading=false]"
READY_CLOCK = f"""
if (location.pathname.endsWith("plugin_entry.html")) {{
  const mark = () => {{
    if (window.benchReady === undefined && document.querySelector("{LRP_READY}, {FLOOR_READY}")) {{
      window.benchReady = performance.now();
    }}
  }};
  new MutationObserver(mark).observe(document, {{ subtree: true, childList: true, attributes: true }});
}}
"""
"""Runs in every frame before its scripts: the moment (on the frame's clock) that a tab became interactive,
read without the delay of polling for it from this process."""
IMAGES_WAIT_MS = 20_000
"""How long an epoch switch waits for the gallery's images at most (the figure then says so)."""


def say(text: str) -> None:
    """Progress on stderr, so that a run that is stopped shows how far it got."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def build_logdir(logdir: Path, options: argparse.Namespace) -> None:
    """The benchmark's two runs in ``logdir``, unless a complete earlier build is there."""
    if (logdir / BUILT).exists():
        say(f"runs from the cache {logdir}")
        return
    started = time.perf_counter()
    build_run(
        logdir / RUN, epochs=options.epochs, samples=options.samples, classes=10, size=28, methods=options.methods
    )
    build_run(logdir / BIG, epochs=1, samples=options.points, classes=10, size=8, thumbnails=False)
    (logdir / BUILT).write_text("complete\n")
    print(
        f"built the runs in {time.perf_counter() - started:.1f} s "
        f"({options.epochs} epochs x {options.samples} samples x {options.methods} methods, 28x28; "
        f"1 epoch x {options.points} samples)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_tensorboard(
    logdir: Path, log: Path, command: tuple[str, ...] = (str(FLOOR_SCRIPT),)
) -> tuple[subprocess.Popen, str]:
    """TensorBoard on a free port (``command``: the script that runs it, and its first arguments)."""
    port = free_port()
    process = subprocess.Popen(
        # TensorBoard as `tensorboard --logdir` runs it, plus the do-nothing tab "floor" (tensorboard_floor.py)
        [sys.executable, *command, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=2) as response:
                listing = json.loads(response.read())
                if listing.get("lrp", {}).get("enabled") and listing.get(FLOOR_NAME, {}).get("enabled"):
                    return process, base
        except (OSError, ValueError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.25)
    process.kill()
    raise SystemExit("TensorBoard did not start:\n" + log.read_text()[-3000:])


@dataclass
class Visits:
    """Times (s) of the page loads of one tab: wall clock here, and on the page's clocks."""

    wall: list[float] = field(default_factory=list)
    """From asking for the page until the tab's frame was seen interactive from this process."""
    host: list[float] = field(default_factory=list)
    """TensorBoard's own page: from its navigation until the tab's frame started."""
    frame: list[float] = field(default_factory=list)
    """The tab's frame: from its start until it was interactive (its own clock, no polling delay)."""
    requests: list[int] = field(default_factory=list)
    """Requests of the tab's frame answered before it was interactive (its page included)."""
    kilobytes: list[float] = field(default_factory=list)
    """Their bytes on the wire (kB)."""
    server_ms: list[float] = field(default_factory=list)
    """CPU time of the TensorBoard process from the page's request until the tab was interactive (ms)."""
    parquet_files: list[int] = field(default_factory=list)
    """Parquet files that the TensorBoard process opened meanwhile."""

    @property
    def total(self) -> list[float]:
        return [h + f for h, f in zip(self.host, self.frame)]


def server_counts(base: str) -> dict[str, float]:
    """The TensorBoard process's CPU time (s) and Parquet files opened so far (tensorboard_floor.py)."""
    with urllib.request.urlopen(f"{base}/data/plugin/{FLOOR_NAME}/counts", timeout=30) as response:
        return json.loads(response.read())


def open_tab(browser: Any, base: str, tab: str, ready: str, visits: Visits) -> tuple[Any, Any]:
    """Open ``/#<tab>`` in a fresh browser context (cold browser caches), wait until ``ready`` matches in
    the tab's frame, and append the times to ``visits``; returns the context and the frame."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    context.add_init_script(READY_CLOCK)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    before = server_counts(base)
    begin = time.perf_counter()
    page.goto(f"{base}/#{tab}")
    frame = page.wait_for_selector(f"iframe[src*='plugin_entry.html?name={tab}']", timeout=60000).content_frame()
    frame.wait_for_selector(ready, timeout=60000)
    visits.wall.append(time.perf_counter() - begin)
    after = server_counts(base)
    visits.server_ms.append((after["cpu_s"] - before["cpu_s"]) * 1000)
    visits.parquet_files.append(after["parquet_files"] - before["parquet_files"])
    frame_start, frame_ready = frame.evaluate("[performance.timeOrigin, window.benchReady]")
    answered = frame.evaluate(
        """(ready) => performance.getEntries().filter((e) => e.responseEnd !== undefined && e.responseEnd <= ready)
            .map((e) => e.transferSize || 0)""",
        frame_ready,
    )
    visits.requests.append(len(answered))
    visits.kilobytes.append(sum(answered) / 1000)
    visits.host.append((frame_start - page.evaluate("performance.timeOrigin")) / 1000)
    visits.frame.append(frame_ready / 1000)
    if errors:
        raise SystemExit(f"console errors in the {tab} tab: {errors}")
    return context, frame


def embedding_bytes(base: str) -> tuple[int, int]:
    url = f"{base}/data/plugin/lrp/embedding?run=big%2Fversion_0&epoch=0&category=all&embedding=tsne&clustering=kmeans"
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        encoding = response.headers.get("Content-Encoding")
    raw = gzip.decompress(body) if encoding == "gzip" else body
    count = json.loads(raw[8 : 8 + int.from_bytes(raw[4:8], "little")])["count"]
    assert count == 50_000 or count > 0
    return len(body), len(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--methods", type=int, default=3, help="attribution methods of the run (default 3)")
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--visits", type=int, default=4, help="page loads to time (the first is cold)")
    parser.add_argument("--switches", type=int, default=10, help="epoch switches to time")
    parser.add_argument("--chromium", default=os.environ.get("LRP_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep the generated runs in this folder and reuse them (default: none)"
    )
    options = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lrp-plugin-bench-") as tmp:
        size = f"e{options.epochs}-s{options.samples}-m{options.methods}-p{options.points}"
        logdir = options.cache / size if options.cache else Path(tmp) / "runs"
        build_logdir(logdir, options)
        say("starting TensorBoard")
        process, base = start_tensorboard(logdir, Path(tmp) / "tensorboard.log")
        try:
            wire, unpacked = embedding_bytes(base)
            say("TensorBoard is up; opening the tab")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=options.chromium, args=ARGS)
                lrp, floor = Visits(), Visits()
                for number in range(options.visits):
                    # The floor's visit second: the LRP tab's first visit is the one with cold caches.
                    context, frame = open_tab(browser, base, "lrp", LRP_READY, lrp)
                    say(
                        f"visit {number + 1}: interactive after {lrp.wall[-1]:.2f} s "
                        f"(on the page's clocks {lrp.total[-1]:.2f} s)"
                    )
                    if number < options.visits - 1:
                        context.close()
                    floor_context, _ = open_tab(browser, base, FLOOR_NAME, FLOOR_READY, floor)
                    say(f"visit {number + 1}: the do-nothing tab after {floor.wall[-1]:.2f} s")
                    floor_context.close()
                # Epoch switches on the last page, through epochs not visited before. The gallery's images
                # load lazily: only those in the viewport load, so only those are waited for (with a bound:
                # a wait that ran out returns -1 and says so below, it never hangs the benchmark).
                switch = """async ([index, bound]) => {
                    const start = performance.now();
                    await lrp.setEpochIndex(index);
                    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
                    const shown = performance.now() - start;
                    const seen = (i) => { const r = i.getBoundingClientRect();
                        return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; };
                    const images = [...document.querySelectorAll('#gallery img')].filter(seen);
                    const loaded = Promise.all(images.map((i) => i.complete ? null : new Promise((done) => {
                        i.addEventListener('load', done); i.addEventListener('error', done); })));
                    const late = new Promise((done) => setTimeout(() => done('late'), bound));
                    const outcome = await Promise.race([loaded, late]);
                    const all = outcome === 'late' ? -1 : performance.now() - start;
                    return [shown, all, lrp.points ? lrp.points.count : 0, images.length];
                }"""
                last = options.epochs - 1
                say("switching epochs")
                # The gallery starts below the fold: in view, its images are part of what a switch loads.
                frame.evaluate("document.querySelector('#gallery').scrollIntoView()")
                results = [frame.evaluate(switch, [last - 1 - k, IMAGES_WAIT_MS]) for k in range(options.switches)]
                shown = [r[0] for r in results]
                loaded = [r[1] for r in results if r[1] >= 0]
                late = sum(r[1] < 0 for r in results)
                points, images = results[0][2], results[0][3]
                back = [
                    frame.evaluate(switch, [last - 1 - k, IMAGES_WAIT_MS])[0] for k in range(3)
                ]  # seen before: browser cache
                say("drawing the big run")
                # Drawing 50,000 points: switch the tab to the big run.
                draw = frame.evaluate(
                    """async () => { await lrp.setRun('big/version_0'); const start = performance.now();
                        lrp.scatter.draw(); return [performance.now() - start, lrp.points.count]; }"""
                )
                browser.close()
        finally:
            process.terminate()
            process.wait(10)

    def row(what: str, value: str, target: str = "", met: bool | None = None, note: str = "") -> None:
        mark = "" if met is None else ("ok" if met else "MISSED")
        print(f"{what:<48} {value:>14}  {target:<17} {mark:<7}{note}")

    def median(values: list[float]) -> float:
        return statistics.median(values[1:]) if len(values) > 1 else values[0]

    later = f"median of {len(lrp.wall) - 1} later visits" if len(lrp.wall) > 1 else "the only visit"
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} CPU cores, load average {load} (1/5/15 min), headless Chromium ({options.chromium})"
    )
    cold, warm = lrp.wall[0], median(lrp.wall)
    row("tab interactive, first visit (cold caches)", f"{cold * 1000:.0f} ms", "target <= 2000 ms", cold <= 2)
    row(f"tab interactive, {later}", f"{warm * 1000:.0f} ms", "target <= 2000 ms", warm <= 2)
    row(
        "  spread of the later visits (min-max)",
        " - ".join(f"{v * 1000:.0f}" for v in (min(lrp.wall[1:] or lrp.wall), max(lrp.wall[1:] or lrp.wall))) + " ms",
    )
    row(
        "  on the page's clocks: first / later (median)",
        f"{lrp.total[0] * 1000:.0f} / {median(lrp.total) * 1000:.0f} ms",
        note="(no polling delay)",
    )
    row(
        "    TensorBoard's page until the tab's frame starts",
        f"{lrp.host[0] * 1000:.0f} / {median(lrp.host) * 1000:.0f} ms",
    )
    row("    the LRP frame until interactive", f"{lrp.frame[0] * 1000:.0f} / {median(lrp.frame) * 1000:.0f} ms")
    row(
        f"floor: a do-nothing tab, median of {len(floor.wall)} visits",
        f"{statistics.median(floor.wall) * 1000:.0f} ms",
        note=f"(page clocks {statistics.median(floor.total) * 1000:.0f} ms, of which its frame "
        f"{statistics.median(floor.frame) * 1000:.0f} ms)",
    )
    row(
        "  the LRP frame's requests until interactive",
        f"{lrp.requests[0]} / {median(lrp.requests):.0f}",
        note=f"({lrp.kilobytes[0]:.0f} / {median(lrp.kilobytes):.0f} kB on the wire; the floor's frame "
        f"{statistics.median(floor.requests):.0f} requests)",
    )
    row(
        "  TensorBoard process: CPU until interactive",
        f"{lrp.server_ms[0]:.0f} / {median(lrp.server_ms):.0f} ms",
        note=f"({lrp.parquet_files[0]} / {median(lrp.parquet_files):.0f} Parquet files opened; the floor "
        f"{statistics.median(floor.server_ms):.0f} ms)",
    )
    row(
        "LRP tab over the floor (later visits, page clocks)",
        f"{(median(lrp.total) - statistics.median(floor.total)) * 1000:.0f} ms",
        note=f"(ratio {median(lrp.total) / statistics.median(floor.total):.2f}x the do-nothing tab)",
    )
    row(
        "epoch switch, unseen epochs (median / max)",
        f"{statistics.median(shown):.0f} / {max(shown):.0f} ms",
        "target <= 300 ms",
        max(shown) <= 300,
        f"({points} points, {images} gallery images)",
    )
    row("  each switch (ms)", " ".join(f"{v:.0f}" for v in shown))
    row(
        "  until the gallery's visible images loaded (median)",
        f"{statistics.median(loaded):.0f} ms" if loaded else "-",
        note=f"({late} switches waited over {IMAGES_WAIT_MS} ms)" if late else "",
    )
    row("epoch switch, epochs seen before (median)", f"{statistics.median(back):.0f} ms")
    row(
        f"{options.points}-point embedding on the wire (gzip)",
        f"{wire / 1e6:.3f} MB",
        "target <= 1 MB",
        wire <= 1e6,
        f"(unpacked {unpacked / 1e6:.3f} MB)",
    )
    row(f"drawing {draw[1]} points on the canvas", f"{draw[0]:.0f} ms")


if __name__ == "__main__":
    main()
