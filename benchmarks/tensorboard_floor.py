"""TensorBoard with one more tab, "floor", whose page does nothing: the floor under the LRP tab's load time.

``python benchmarks/tensorboard_floor.py --logdir DIR --port N`` runs ``tensorboard --logdir DIR`` with
every plugin that TensorBoard would load (the LRP plugin included, through its entry point) plus the
tab ``floor``. That tab's page is one ES module that puts ``<div id="floor" data-ready="true">`` into
the tab's frame: opening ``/#floor`` costs what TensorBoard's page and its plugin frame cost before any
plugin does work, on the same server, in the same browser, so ``plugin_speed.py`` prints it next to
the LRP tab's time.

The floor tab also answers ``/data/plugin/floor/counts``: the server process's CPU time and how many
Parquet files it opened so far, so that the benchmark can print the server's work per page load,
figures that the machine's load does not change the way it changes wall times.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from tensorboard.plugins import base_plugin

FLOOR_NAME = "floor"
"""The trivial tab's name: its URL is ``/#floor``, its frame ``plugin_entry.html?name=floor``."""
FLOOR_READY = "#floor[data-ready=true]"
"""Selector in the trivial tab's frame once its module ran (what the LRP tab's readiness is compared with)."""

_MODULE = b"""export function render() {
  const done = document.createElement("div");
  done.id = "floor";
  done.textContent = "floor";
  done.dataset.ready = "true";
  document.body.append(done);
}
"""


_COUNTS = {"parquet_files": 0}
_COUNTS_LOCK = threading.Lock()


def count_parquet_files() -> None:
    """Count every ``pyarrow.parquet.ParquetFile`` opened from now on in this process (the store opens
    each Parquet file it reads through it)."""
    import pyarrow.parquet as pq

    opened = pq.ParquetFile

    class Counted(opened):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with _COUNTS_LOCK:
                _COUNTS["parquet_files"] += 1
            super().__init__(*args, **kwargs)

    pq.ParquetFile = Counted


class FloorPlugin(base_plugin.TBPlugin):
    """A tab that is always active and whose frame only runs :data:`_MODULE`."""

    plugin_name = FLOOR_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        del context

    def get_plugin_apps(self) -> dict[str, Any]:
        from werkzeug import wrappers

        @wrappers.Request.application
        def module(request: wrappers.Request) -> wrappers.Response:
            return wrappers.Response(_MODULE, content_type="text/javascript; charset=utf-8")

        @wrappers.Request.application
        def counts(request: wrappers.Request) -> wrappers.Response:
            answer = {**_COUNTS, "cpu_s": time.process_time()}
            return wrappers.Response(json.dumps(answer), content_type="application/json")

        return {"/index.js": module, "/counts": counts}

    def is_active(self) -> bool:
        return True

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="floor")


def main() -> None:
    """Run TensorBoard as ``tensorboard.main`` does, with :class:`FloorPlugin` added last."""
    from absl import app
    from tensorboard import default, main_lib, program

    count_parquet_files()
    main_lib.global_init()
    tensorboard = program.TensorBoard(plugins=[*default.get_plugins(), FloorPlugin])
    try:
        app.run(tensorboard.main, flags_parser=tensorboard.configure)
    except base_plugin.FlagsError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
