"""A bounded fuzz of every plugin route against a logdir with the faults of issue 14 planted.

Each run of the logdir carries one fault (a named pipe, flipped bits, a part of another epoch, a
wrong-schema analysis table, bad manifest values, a link out of the run, NaN maps ...). Random
requests, with valid and invalid values for every parameter and every HTTP method, go to every route;
each must answer within a timeout and never with a server error (5xx).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

TESTS = Path(__file__).resolve().parents[1]
REQUESTS = 400
TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def plant_faults(logdir: Path) -> dict[str, list[int]]:
    """Runs with one fault each; returns run name -> sample ids of the run."""
    sys.path.insert(0, str(TESTS / "tb_plugin"))
    from plugin_testing import write_odd_run
    from synthetic_runs import build_run

    def rewrite(path: Path, change) -> None:
        table = pq.read_table(path)
        pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), path)

    def fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))

    def manifest(store, change) -> None:
        path = store.store_dir / "manifest.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    def link_out(path: Path) -> None:
        outside = logdir.parent / f"outside-{path.name}"
        outside.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(outside)

    faults = {
        "healthy": lambda s: None,
        "fifo-part": lambda s: fifo(s.epoch_dir(1) / "part-00000.parquet"),
        "fifo-clusters": lambda s: fifo(s.analysis_path(0, "clusters")),
        "fifo-manifest": lambda s: fifo(s.store_dir / "manifest.json"),
        "flipped-part": lambda s: flip(s.epoch_dir(0) / "part-00000.parquet"),
        "copied-part": lambda s: (s.epoch_dir(1) / "part-00000.parquet").write_bytes(
            (s.epoch_dir(0) / "part-00000.parquet").read_bytes()
        ),
        "deleted-part": lambda s: (s.epoch_dir(1) / "part-00000.parquet").unlink(),
        "garbage-spectrum": lambda s: (s.analysis_path(1, "spectrum")).write_bytes(b"PAR1 no PAR1"),
        "schema-clusters": lambda s: rewrite(
            s.analysis_path(0, "clusters"), lambda t: t.drop_columns(["prototype", "size"])
        ),
        "schema-points": lambda s: rewrite(
            s.analysis_path(0, "points"),
            lambda t: t.set_column(t.schema.get_field_index("sample_id"), "sample_id", pa.array(["x"] * t.num_rows)),
        ),
        "schema-lineage": lambda s: rewrite(s.analysis_path(1, "lineage"), lambda t: t.drop_columns(["track"])),
        "shape-word": lambda s: manifest(s, lambda m: m.update(heatmap_shape="big")),
        "shape-same-size": lambda s: manifest(s, lambda m: m.update(heatmap_shape=[4, 16])),
        "bad-entry": lambda s: manifest(s, lambda m: m["epochs"][1].update(rows="many")),
        "epochs-not-list": lambda s: manifest(s, lambda m: m.update(epochs={"0": 1})),
        "class-names-number": lambda s: manifest(s, lambda m: m.update(class_names=5)),
        "link-probe": lambda s: link_out(s.probe_path),
        "link-part": lambda s: link_out(s.epoch_dir(0) / "part-00000.parquet"),
        "truncated-probe": lambda s: s.probe_path.write_bytes(s.probe_path.read_bytes()[:50]),
    }
    samples = {}
    for name, plant in faults.items():
        store = build_run(logdir / name, epochs=2, samples=9, analysed=[0, 1], size=8, seed=len(samples))
        samples[name] = [int(i) for i in store.heatmaps(0)[0]]
        plant(store)
    write_odd_run(logdir / "nan-maps")
    samples["nan-maps"] = [1, 2]
    return samples


def test_fuzzed_requests_to_every_route_never_hang_and_never_answer_5xx(tmp_path):
    sys.path.insert(0, str(TESTS / "tb_plugin"))
    from plugin_testing import PREFIX, make_app
    from synthetic_runs import CLUSTERING

    samples = plant_faults(tmp_path / "logdir")
    client, plugin = make_app(tmp_path / "logdir")
    rng = random.Random(14)
    runs = [*samples, "", "../etc", "a" * 300, "bell\x07", "nan-maps/..", "healthy/plugins/lrp"]
    values = {
        "run": lambda: rng.choice(runs),
        "epoch": lambda: rng.choice(["0", "1", "2", "-1", "x", "1e3", str(2**40), "", " 1"]),
        "sample": lambda run: rng.choice([*samples.get(run, [0]), -5, "z", "9" * 30, "0x10"]),
        "category": lambda: rng.choice(["all", "class_0", "class_1", "class_9", "", "../x", "a" * 300]),
        "clustering": lambda: rng.choice([CLUSTERING, "halves", "nope", ""]),
        "cluster": lambda: rng.choice(["0", "1", "2", "-1", "-2", "q", str(2**33)]),
        "cmap": lambda: rng.choice(["bwr", "gray", "nope", ""]),
        "kind": lambda: rng.choice(["heatmap", "overlay", "x"]),
        "embedding": lambda: rng.choice(["spectral", "tsne", "umap", "nope"]),
        "x": lambda: rng.choice(["0", "1", "3", "9", "-1", "x"]),
        "y": lambda: rng.choice(["0", "1", "3", "9999"]),
        "finding": lambda: rng.choice(["class_0/top-left-corner@0", "x", "", "z" * 250]),
    }
    routes = sorted(plugin.routes()) + ["/index.js", "/views/gallery.js", "/nope"]
    outcomes: list[tuple[str, str, int | str]] = []

    def request(method: str, url: str) -> None:
        answer: dict = {}

        def send() -> None:
            try:
                answer["status"] = client.open(url, method=method).status_code
            except BaseException as exc:  # a failure inside the app is what the fuzz looks for
                answer["status"] = f"raised {type(exc).__name__}: {exc}"

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        outcomes.append((method, url, answer.get("status", "hang")))

    from urllib.parse import urlencode

    for _ in range(REQUESTS):
        route = rng.choice(routes)
        run = values["run"]()
        params = {"run": run}
        for name in ("epoch", "category", "clustering", "cluster", "cmap", "kind", "embedding", "x", "y", "finding"):
            if rng.random() < 0.7:
                params[name] = values[name]()
        if rng.random() < 0.8:
            params["sample"] = values["sample"](run)
        if rng.random() < 0.05:
            params.pop("run")
        method = rng.choice(["GET"] * 9 + ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"])
        request(method, f"{PREFIX}{route}?{urlencode(params)}")
    for run in samples:  # every route once per run with values that exist, so the faults are reached
        for route in plugin.routes():
            params = {"run": run, "epoch": 0, "sample": samples[run][0], "category": "all", "clustering": CLUSTERING}
            request("GET", f"{PREFIX}{route}?{urlencode({**params, 'cluster': 0})}")
            request("GET", f"{PREFIX}{route}?{urlencode({**params, 'epoch': 1})}")

    hangs = [o for o in outcomes if o[2] == "hang"]
    errors = [o for o in outcomes if not isinstance(o[2], int) or o[2] >= 500]
    assert len(outcomes) >= REQUESTS
    assert hangs == [] and errors == [], f"{len(hangs)} hangs, {len(errors)} server errors: {errors[:5]}"
    ok = [o for o in outcomes if o[2] == 200]
    assert len(ok) > 50  # the fuzz reached the data, not only the argument checks
