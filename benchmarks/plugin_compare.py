"""The LRP tab's load, this checkout's plugin against an older revision's, visits alternating.

Starts two TensorBoards on the same logdir (``plugin_speed.py``'s benchmark run): one with this
checkout's plugin, one with ``tb_plugin/`` as it was at ``--old`` (the rest of the package is this
checkout's), and opens the tab in each in turn (A B B A ...), each visit in a fresh browser context, so
that both share the machine's load. Per plugin it prints the median (and spread) of the tab's frame
until interactive (on the frame's clock) and of the whole page (wall clock), and, figures that the load
does not change: the frame's requests until interactive (static files and data), their bytes, and
their round trips (a request's round is one more than the latest round of the requests that had
answered before it was sent).

Usage::

    python benchmarks/plugin_compare.py [--old main] [--visits 6] [--cache DIR] [--methods 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

ROUNDS = """(ready) => {
  const entries = [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")]
    .filter((e) => e.responseEnd <= ready)
    .sort((a, b) => (a.requestStart || a.startTime) - (b.requestStart || b.startTime));
  const done = [];
  for (const e of entries) {
    const sent = e.requestStart || e.startTime;
    let round = 1;
    for (const d of done) if (d.end <= sent) round = Math.max(round, d.round + 1);
    done.push({ end: e.responseEnd, round, name: e.name });
  }
  const isStatic = (name) => /\\.(js|css|html)(\\?|$)/.test(new URL(name).pathname);
  return {
    requests: entries.length,
    static: entries.filter((e) => isStatic(e.name)).length,
    rounds: Math.max(...done.map((d) => d.round)),
    staticRounds: Math.max(0, ...done.filter((d) => isStatic(d.name)).map((d) => d.round)),
    bytes: entries.reduce((sum, e) => sum + (e.transferSize || 0), 0),
  };
}"""


def serve_old(plugin_dir: str, argv: list[str]) -> None:
    """Run ``tensorboard_floor.py`` with ``lrp_lightning.tb_plugin`` imported from ``plugin_dir``."""
    import lrp_lightning

    spec = importlib.util.spec_from_file_location(
        "lrp_lightning.tb_plugin", Path(plugin_dir) / "__init__.py", submodule_search_locations=[plugin_dir]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["lrp_lightning.tb_plugin"] = module
    spec.loader.exec_module(module)
    lrp_lightning.tb_plugin = module
    import tensorboard_floor

    sys.argv = [sys.argv[0], *argv]
    tensorboard_floor.main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="main", help="git revision of the plugin to compare with (default main)")
    parser.add_argument("--visits", type=int, default=6, help="visits of each tab (default 6)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--methods", type=int, default=3)
    parser.add_argument("--points", type=int, default=2000, help="samples of the second run (default 2000)")
    parser.add_argument("--chromium", default=os.environ.get("LRP_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--cache", type=Path, default=None, help="keep the generated runs in this folder")
    options = parser.parse_args()

    import plugin_speed
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lrp-plugin-compare-") as tmp:
        size = f"e{options.epochs}-s{options.samples}-m{options.methods}-p{options.points}"
        logdir = options.cache / size if options.cache else Path(tmp) / "runs"
        plugin_speed.build_logdir(logdir, options)
        old_dir = Path(tmp) / "old"
        old_dir.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", options.old, "tb_plugin"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_dir)], input=archive, check=True)
        servers = {}
        for name, command in (
            ("old", (str(Path(__file__).resolve()), "--serve-old", str(old_dir / "tb_plugin"))),
            ("new", (str(plugin_speed.FLOOR_SCRIPT),)),
        ):
            plugin_speed.say(f"starting TensorBoard with the {name} plugin")
            servers[name] = plugin_speed.start_tensorboard(logdir, Path(tmp) / f"{name}.log", command)
        visits = {name: plugin_speed.Visits() for name in servers}
        counts: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=options.chromium, args=plugin_speed.ARGS)
                for number in range(options.visits):
                    order = ["old", "new"] if number % 2 == 0 else ["new", "old"]
                    for name in order:
                        base = servers[name][1]
                        context, frame = plugin_speed.open_tab(
                            browser, base, "lrp", plugin_speed.LRP_READY, visits[name]
                        )
                        counts[name].append(frame.evaluate(ROUNDS, frame.evaluate("window.benchReady")))
                        context.close()
                        plugin_speed.say(
                            f"visit {number + 1} {name}: frame {visits[name].frame[-1] * 1000:.0f} ms, "
                            f"wall {visits[name].wall[-1] * 1000:.0f} ms, {counts[name][-1]}"
                        )
                browser.close()
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)

    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPU cores, load average {load} (1/5/15 min); old = tb_plugin at {options.old}")
    print(f"{options.visits} visits each, alternating; medians of the visits after the first (min-max)")
    for name in ("old", "new"):
        v, c = visits[name], counts[name][1:] or counts[name]
        frame, wall = v.frame[1:] or v.frame, v.wall[1:] or v.wall
        print(
            f"{name}: frame {statistics.median(frame) * 1000:.0f} ms "
            f"({min(frame) * 1000:.0f}-{max(frame) * 1000:.0f}), "
            f"page {statistics.median(wall) * 1000:.0f} ms ({min(wall) * 1000:.0f}-{max(wall) * 1000:.0f}); "
            f"requests {statistics.median([x['requests'] for x in c]):.0f} "
            f"(static {statistics.median([x['static'] for x in c]):.0f}), "
            f"round trips {statistics.median([x['rounds'] for x in c]):.0f} "
            f"(static {statistics.median([x['staticRounds'] for x in c]):.0f}), "
            f"{statistics.median([x['bytes'] for x in c]) / 1000:.0f} kB"
        )
    ratio = statistics.median(visits["new"].frame[1:] or visits["new"].frame) / statistics.median(
        visits["old"].frame[1:] or visits["old"].frame
    )
    print(f"new / old frame time: {ratio:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-old":
        serve_old(sys.argv[2], sys.argv[3:])
    else:
        main()
