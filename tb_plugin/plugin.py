"""The TensorBoard plugin "lrp": thin WSGI routes over :class:`~lrp_lightning.tb_plugin.data.PluginData`.

Every route validates its arguments before it reads anything: a run must be one that the plugin's
own scan found (:class:`~lrp_lightning.tb_plugin.discovery.RunIndex`), numbers are parsed strictly
and bounded, names are checked against what the run's tables hold, and no file path is built from
request text. Bad requests get 400 (:class:`tensorboard.errors.InvalidArgumentError`), missing or
unreadable items 404 (:class:`tensorboard.errors.NotFoundError`) with a message that names the item.

Routes (below ``/data/plugin/lrp``), all GET (other methods get 405). Every route with a ``run`` also
takes ``method`` (one of the run's attribution methods, default the first) and ``analysis`` (a named
analysis, default the default one): what it serves is that method's maps and that analysis' tables.

======================  ==========================================  ====================================
route                   parameters                                  response
======================  ==========================================  ====================================
``/runs``                                                           JSON: runs, epoch counts, errors
``/run``                run                                         JSON: metadata, epochs, colour maps
``/first_view``         run, epoch (both optional)                  JSON: ``/runs``, the run opened and
                                                                    its ``/run`` and ``/findings``, the
                                                                    epoch opened and its ``/analysis``
``/samples``            run, epoch                                  binary columns: per-sample values;
                                                                    probe metadata in the header
``/input``              run, sample                                 PNG: the stored input thumbnail
``/heatmap``            run, epoch, sample, cmap, kind              PNG: heatmap or overlay
``/timeline``           run, sample                                 JSON: one sample over all epochs
``/analysis``           run, epoch                                  JSON: categories, spectra, choices
``/embedding``          run, epoch, category, embedding, x, y,      binary columns: points
                        clustering (optional)
``/clusters``           run, epoch, category, clustering            JSON: clusters with indicators
``/prototype``          run, epoch, category, clustering,           PNG: a cluster's mean heatmap
                        cluster, cmap
``/prototype_values``    run, epoch, category, clustering,           JSON: a signal, tabular or token
                        cluster, cmap                               cluster's prototype as values with
                                                                    their colours, feature names or
                                                                    tokens (cacheable)
``/lineage``            run, category, clustering                   JSON: clusters over epochs
``/findings``           run                                         JSON: findings with their lineage
``/finding_map``        run, finding, epoch, cmap                   PNG: mean heatmap of a finding's
                                                                    members in one epoch
``/finding_values``     run, finding, epoch, cmap                   JSON: the same of a signal, tabular
                                                                    or token run as values (per time
                                                                    step, feature or token; cacheable)
``/relevance``          run, epoch, sample, cmap, bins (optional)   JSON: a signal, tabular or token
                                                                    sample's relevance values, their
                                                                    colours, its input line, feature
                                                                    names or tokens (cacheable)
``/trajectory``         run, sample, cmap, bins (optional)          JSON: the same in every epoch
``/bundle.js``                                                      the frontend's modules in one
                                                                    module (:mod:`.bundle`): the tab's
                                                                    entry in TensorBoard
``/index.js`` ...                                                   the static frontend: ``static/*``
``/views/*.js``                                                     and ``static/views/*.js``
======================  ==========================================  ====================================
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from lrp_lightning.store import StoreError

from .bundle import bundle
from .data import (
    DEFAULT_CMAP,
    HEATMAP_KINDS,
    MAX_REQUEST_TEXT,
    SPECTRAL_EMBEDDING,
    BadArgument,
    NotFound,
    Payload,
    PluginData,
    Selected,
)
from .discovery import RunIndex
from .loader import PLUGIN_NAME

__all__ = ["BUNDLE_ROUTE", "LRPPlugin", "STATIC_DIR", "route", "static_files"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_STATIC_NAME = re.compile(r"[a-z][a-z0-9_-]*\.(js|css|html)")
_STATIC_FOLDER = re.compile(r"[a-z][a-z0-9_-]*")

MAX_EPOCH = 2**31 - 1
MAX_DIMENSION = 1023
MAX_CLUSTER = 2**31 - 1
SAMPLE_RANGE = (-(2**63), 2**63 - 1)
MAX_TEXT = MAX_REQUEST_TEXT
MAX_FINDING_ID = 200
MAX_BINS = 4096
"""Most bins a signal's relevance may be reduced to for a drawing (``/relevance?bins=``)."""
_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}")
BUNDLE_ROUTE = "/bundle.js"
"""The frontend's modules in one module (:func:`.bundle.bundle`), built when TensorBoard asks for the routes;
TensorBoard loads it into the tab's frame (one request instead of one per module)."""
IMAGE_MAX_AGE = 600
"""Seconds a browser may keep a PNG; the frontend puts the epoch's commit id into image URLs."""


def static_files() -> list[Path]:
    """The frontend's files: ``static/<name>`` and ``static/<folder>/<name>`` (e.g. ``views/gallery.js``).

    Each becomes an exact route (``/index.js``, ``/views/gallery.js``), so a request can only name a
    file listed here at start-up: no path is built from request text, and ``..`` matches nothing.
    """
    files = []
    for path in sorted(STATIC_DIR.glob("*")) + sorted(STATIC_DIR.glob("*/*")):
        folders = path.relative_to(STATIC_DIR).parts[:-1]
        if (
            path.is_file()
            and _STATIC_NAME.fullmatch(path.name)
            and all(_STATIC_FOLDER.fullmatch(folder) for folder in folders)
        ):
            files.append(path)
    return files


def _short(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def _text(request: wrappers.Request, name: str, default: str | None = None) -> str:
    values = request.args.getlist(name)
    if not values:
        if default is None:
            raise errors.InvalidArgumentError(f"missing parameter {name!r}")
        return default
    if len(values) > 1:
        raise errors.InvalidArgumentError(f"parameter {name!r} is given {len(values)} times; give it once")
    value = values[0]
    if len(value) > MAX_TEXT or not value.isprintable():
        raise errors.InvalidArgumentError(f"parameter {name!r} must be printable text of at most {MAX_TEXT} characters")
    return value


def _integer(request: wrappers.Request, name: str, low: int, high: int, default: int | None = None) -> int:
    text = _text(request, name, None if default is None else str(default))
    if not _INTEGER.fullmatch(text):
        raise errors.InvalidArgumentError(f"parameter {name!r} must be an integer, got {_short(text)}")
    value = int(text)
    if not low <= value <= high:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be in [{low}, {high}], got {value}")
    return value


def _choice(request: wrappers.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = _text(request, name, default)
    if value not in choices:
        raise errors.InvalidArgumentError(f"parameter {name!r} must be one of {list(choices)}, got {_short(value)}")
    return value


def _name(request: wrappers.Request, name: str, default: str | None = None) -> str:
    value = _text(request, name, default)
    if not _NAME.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"parameter {name!r} must be a name of letters, digits and '_.:+-', got {_short(value)}"
        )
    return value


_RESPONSES: dict[str, Callable[[wrappers.Request, Any], wrappers.Response]] = {
    "json": lambda request, value: http_util.Respond(request, value, "application/json"),
    "png": lambda request, data: http_util.Respond(request, data, "image/png", expires=IMAGE_MAX_AGE),
    # JSON that the browser may keep like a PNG: the frontend puts the epoch's commit id into the URL.
    "cached_json": lambda request, value: http_util.Respond(request, value, "application/json", expires=IMAGE_MAX_AGE),
    # Sent gzipped; Respond unpacks it for the rare client that does not accept gzip.
    "columns": lambda request, payload: http_util.Respond(
        request, payload.gzipped, "application/octet-stream", content_encoding="gzip"
    ),
}
"""How a route's value becomes a response: JSON, a PNG (cacheable), binary columns (a ``Payload``)."""

logger = logging.getLogger(__name__)

_READ_METHODS = ("GET", "HEAD")
_WARM_UP_SCAN_WAIT_S = 120.0
"""How long the warm-up waits for the logdir's first scan before it leaves the first view unprepared."""


def _warm_up(data: PluginData | None) -> None:
    """Load, while TensorBoard starts, what the tab's first requests would otherwise load while a user waits.

    PyArrow imports pandas (when it is installed) on its first conversion of a column to NumPy: 2.5 s
    on this project's 2-core machine while it was busy, most of the first ``/run`` of the plugin
    benchmark's run (1.9 s cold before, 0.19 s with this done at start). Then, given ``data``, the
    first run's first view (:meth:`PluginData.prepare_first_view`): on that run 101 Parquet files
    (every epoch's analysis state, the findings), once the logdir's first scan is done.
    """
    pa.chunked_array([pa.array(np.zeros(1, np.int64))]).to_numpy()
    if data is None or not data.index.wait_ready(_WARM_UP_SCAN_WAIT_S):
        return
    try:
        data.prepare_first_view()
    except Exception:  # best effort: the routes read (and report) whatever this could not
        logger.debug("preparing the LRP tab's first view failed", exc_info=True)


def _method_not_allowed(request: wrappers.Request) -> wrappers.Response:
    """405 for any method but GET and HEAD: every route only reads (and changes nothing)."""
    return wrappers.Response(
        f"method {request.method} is not allowed here; the LRP plugin's routes answer GET only\n",
        status=405,
        headers={"Allow": ", ".join(_READ_METHODS)},
        content_type="text/plain; charset=utf-8",
    )


def route(path: str, response: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a method of :class:`LRPPlugin` as the GET route ``path`` below ``/data/plugin/lrp``.

    The method takes the request, validates its arguments with the module's parsers (``_text``,
    ``_integer``, ``_choice``, ``_name``, ``LRPPlugin._run`` ...) and returns the value to send; the
    route turns it into a response and turns the data layer's errors into TensorBoard's 404 and 400.
    Adding a route is this one decorated method (and a row in the module docstring's table);
    :meth:`LRPPlugin.routes` finds it, a subclass's routes included.

    Parameters
    ----------
    path : str
        The route, e.g. ``"/clusters"``; one path component, not a static file's name.
    response : str
        ``"json"`` (a JSON-serialisable value), ``"cached_json"`` (the same, cacheable: for routes whose
        URL names the epoch's version), ``"png"`` (PNG bytes, cacheable) or ``"columns"`` (a
        :class:`~lrp_lightning.tb_plugin.data.Payload` of binary columns).
    """
    if response not in _RESPONSES:
        raise ValueError(f"route {path!r}: response must be one of {sorted(_RESPONSES)}, got {response!r}")
    if not re.fullmatch(r"/[a-z][a-z0-9_]*", path):
        raise ValueError(f"route {path!r} must be '/' and a lower-case name of letters, digits and '_'")
    respond = _RESPONSES[response]

    def register(handler: Callable[[LRPPlugin, wrappers.Request], Any]) -> Callable[..., Any]:
        @wrappers.Request.application
        def serve(self: LRPPlugin, request: wrappers.Request) -> wrappers.Response:
            if request.method not in _READ_METHODS:
                return _method_not_allowed(request)
            try:
                return respond(request, handler(self, request))
            except NotFound as exc:
                raise errors.NotFoundError(str(exc)) from None
            except BadArgument as exc:
                raise errors.InvalidArgumentError(str(exc)) from None
            except (StoreError, OSError, pa.ArrowException) as exc:
                # A safety net: a file that broke or vanished between two reads is that item's 404.
                raise errors.NotFoundError(f"cannot be read: {self.index.redact(str(exc))}") from None

        serve.__name__ = handler.__name__
        serve.__doc__ = handler.__doc__
        serve.lrp_route = path  # found by LRPPlugin.routes
        return serve

    return register


class LRPPlugin(base_plugin.TBPlugin):
    """TensorBoard plugin "lrp": heatmaps, embeddings and clusters of training-time LRP runs.

    Parameters
    ----------
    context : tensorboard.plugins.base_plugin.TBContext
        TensorBoard's context; only ``logdir`` is used (TensorFlow is not needed).
    scan_interval : float, optional
        Seconds between background rescans of the logdir for new runs (default 10). New epochs of
        a known run appear without a rescan: every request reads the run's current manifest.
    prepare_first_view : bool, optional
        Read the first run's first view into the cache in the background at start (default True),
        so that the tab's first visit does not wait for those reads; tests that count cache hits
        turn it off.
    """

    plugin_name = PLUGIN_NAME

    def __init__(
        self, context: base_plugin.TBContext, scan_interval: float = 10.0, *, prepare_first_view: bool = True
    ) -> None:
        self._index = RunIndex(getattr(context, "logdir", None), interval=scan_interval)
        self._data = PluginData(self._index)
        warm = self._data if prepare_first_view else None
        self._preparing = threading.Thread(target=_warm_up, args=(warm,), name="lrp-plugin-warm-up", daemon=True)
        self._preparing.start()

    @property
    def index(self) -> RunIndex:
        """The runs found below the logdir."""
        return self._index

    @property
    def data(self) -> PluginData:
        """The data layer (for tests and benchmarks)."""
        return self._data

    # ------------------------------------------------------------------------------ TBPlugin

    @classmethod
    def routes(cls) -> dict[str, str]:
        """Route path -> name of the method that serves it: the methods decorated with :func:`route`.

        Raises
        ------
        ValueError
            If two methods of one class claim the same path (a subclass may override a path).
        """
        routes: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            own: dict[str, str] = {}
            for name, value in vars(klass).items():
                path = getattr(value, "lrp_route", None)
                if path is None:
                    continue
                if path in own:
                    raise ValueError(f"{klass.__name__}.{name} and .{own[path]} both serve {path!r}; rename one")
                own[path] = name
            routes.update(own)
        return routes

    def get_plugin_apps(self) -> dict[str, Callable[..., Any]]:
        apps: dict[str, Callable[..., Any]] = {path: getattr(self, name) for path, name in self.routes().items()}
        for path in static_files():
            apps["/" + path.relative_to(STATIC_DIR).as_posix()] = self._static_app(path)
        apps[BUNDLE_ROUTE] = self._bundle_app(bundle(STATIC_DIR).encode("utf-8"))
        return apps

    def is_active(self) -> bool:
        # Answered from the last background scan: TensorBoard calls this on every page load.
        return self._index.is_active()

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path=BUNDLE_ROUTE, tab_name="LRP")

    # ------------------------------------------------------------------------------ static files

    def _static_app(self, path: Path) -> Callable[..., Any]:
        content_type = _CONTENT_TYPES[path.suffix]
        name = path.relative_to(STATIC_DIR).as_posix()

        @wrappers.Request.application
        def serve(request: wrappers.Request) -> wrappers.Response:
            if request.method not in _READ_METHODS:
                return _method_not_allowed(request)
            try:
                content = path.read_bytes()
            except OSError:
                raise errors.NotFoundError(f"frontend file {name} is missing from the installation") from None
            return http_util.Respond(request, content, content_type)

        return serve

    def _bundle_app(self, content: bytes) -> Callable[..., Any]:
        """The bundle, revalidated on every load as the other static files are (``no-cache``), with an
        ETag of its content: a browser that holds this build gets ``304 Not Modified`` and no body."""
        etag = hashlib.sha256(content).hexdigest()[:32]

        @wrappers.Request.application
        def serve(request: wrappers.Request) -> wrappers.Response:
            if request.method not in _READ_METHODS:
                return _method_not_allowed(request)
            if etag in request.if_none_match:
                response = wrappers.Response(status=304)
                response.set_etag(etag)
                return response
            response = http_util.Respond(request, content, _CONTENT_TYPES[".js"])
            response.set_etag(etag)
            return response

        return serve

    # ------------------------------------------------------------------------------ arguments

    def _run(self, request: wrappers.Request) -> str:
        """The run, with the attribution method and named analysis the optional ``method`` and
        ``analysis`` parameters select (default: the run's first method, the default analysis)."""
        run = _text(request, "run")
        if run not in self._index.names():
            raise errors.NotFoundError(f"no run {_short(run)} with LRP data below the logdir")
        method = _name(request, "method") if request.args.get("method") else None
        analysis = _name(request, "analysis") if request.args.get("analysis") else None
        return run if method is None and analysis is None else Selected(run, method, analysis)

    @staticmethod
    def _epoch(request: wrappers.Request) -> int:
        return _integer(request, "epoch", 0, MAX_EPOCH)

    @staticmethod
    def _sample(request: wrappers.Request) -> int:
        return _integer(request, "sample", *SAMPLE_RANGE)

    @staticmethod
    def _finding(request: wrappers.Request) -> str:
        finding = _text(request, "finding")
        if not finding or len(finding) > MAX_FINDING_ID:
            raise errors.InvalidArgumentError(
                f"parameter 'finding' must be a finding id of 1 to {MAX_FINDING_ID} characters (see /findings)"
            )
        return finding

    @staticmethod
    def _cmap(request: wrappers.Request) -> str:
        from lrp_lightning.image import COLOR_MAPS

        return _choice(request, "cmap", tuple(sorted(COLOR_MAPS)), DEFAULT_CMAP)

    # ------------------------------------------------------------------------------ routes

    @route("/runs", "json")
    def _serve_runs(self, request: wrappers.Request) -> dict[str, Any]:
        """Runs with LRP data; a run that cannot be read is listed with its error."""
        return {"runs": self._data.runs(), "scanned_at": self._index.scanned_at}

    @route("/run", "json")
    def _serve_run(self, request: wrappers.Request) -> dict[str, Any]:
        return self._data.run_info(self._run(request))

    @route("/first_view", "json")
    def _serve_first_view(self, request: wrappers.Request) -> dict[str, Any]:
        """The tab's start in one round trip (:meth:`PluginData.first_view`): a ``run`` that is not
        listed, or an ``epoch`` the run lacks, opens the first run and the last epoch, as the tab does."""
        run = _text(request, "run", "") or None
        epoch = _integer(request, "epoch", 0, MAX_EPOCH) if request.args.get("epoch") else None
        view = self._data.first_view(run, epoch)
        return {**view, "scanned_at": self._index.scanned_at}

    @route("/samples", "columns")
    def _serve_samples(self, request: wrappers.Request) -> Payload:
        run, epoch = self._run(request), self._epoch(request)
        return self._data.samples(run, epoch)

    @route("/input", "png")
    def _serve_input(self, request: wrappers.Request) -> bytes:
        run, sample = self._run(request), self._sample(request)
        return self._data.input_png(run, sample)

    @route("/heatmap", "png")
    def _serve_heatmap(self, request: wrappers.Request) -> bytes:
        run, epoch, sample = self._run(request), self._epoch(request), self._sample(request)
        cmap = self._cmap(request)
        kind = _choice(request, "kind", HEATMAP_KINDS, "heatmap")
        return self._data.heatmap_png(run, epoch, sample, cmap, kind)

    @route("/timeline", "json")
    def _serve_timeline(self, request: wrappers.Request) -> dict[str, Any]:
        run, sample = self._run(request), self._sample(request)
        return self._data.timeline(run, sample)

    @route("/analysis", "json")
    def _serve_analysis(self, request: wrappers.Request) -> dict[str, Any]:
        run, epoch = self._run(request), self._epoch(request)
        return self._data.analysis(run, epoch)

    @route("/embedding", "columns")
    def _serve_embedding(self, request: wrappers.Request) -> Payload:
        run, epoch = self._run(request), self._epoch(request)
        category = _name(request, "category")
        method = _name(request, "embedding", SPECTRAL_EMBEDDING)
        x = _integer(request, "x", 0, MAX_DIMENSION, 0)
        y = _integer(request, "y", 0, MAX_DIMENSION, 1)
        clustering = _name(request, "clustering") if request.args.get("clustering") else None
        return self._data.embedding(run, epoch, category, method, x, y, clustering)

    @route("/clusters", "json")
    def _serve_clusters(self, request: wrappers.Request) -> dict[str, Any]:
        run, epoch = self._run(request), self._epoch(request)
        category, clustering = _name(request, "category"), _name(request, "clustering")
        return self._data.clusters(run, epoch, category, clustering)

    @route("/prototype", "png")
    def _serve_prototype(self, request: wrappers.Request) -> bytes:
        run, epoch = self._run(request), self._epoch(request)
        category, clustering = _name(request, "category"), _name(request, "clustering")
        cluster = _integer(request, "cluster", -1, MAX_CLUSTER)
        cmap = self._cmap(request)
        return self._data.prototype_png(run, epoch, category, clustering, cluster, cmap)

    @route("/prototype_values", "cached_json")
    def _serve_prototype_values(self, request: wrappers.Request) -> dict[str, Any]:
        """A signal, tabular or token run's cluster prototype as values (per time bin, feature or token)."""
        run, epoch = self._run(request), self._epoch(request)
        category, clustering = _name(request, "category"), _name(request, "clustering")
        cluster = _integer(request, "cluster", -1, MAX_CLUSTER)
        return self._data.prototype_values(run, epoch, category, clustering, cluster, self._cmap(request))

    @route("/lineage", "json")
    def _serve_lineage(self, request: wrappers.Request) -> dict[str, Any]:
        run = self._run(request)
        category, clustering = _name(request, "category"), _name(request, "clustering")
        return self._data.lineage(run, category, clustering)

    @route("/findings", "json")
    def _serve_findings(self, request: wrappers.Request) -> dict[str, Any]:
        """The run's findings over its analysed epochs; empty for a run analysed before findings existed."""
        return self._data.findings(self._run(request))

    @route("/finding_map", "png")
    def _serve_finding_map(self, request: wrappers.Request) -> bytes:
        run, epoch = self._run(request), self._epoch(request)
        return self._data.finding_prototype_png(run, self._finding(request), epoch, self._cmap(request))

    @route("/finding_values", "cached_json")
    def _serve_finding_values(self, request: wrappers.Request) -> dict[str, Any]:
        """A signal, tabular or token run's finding in one epoch as values (per time step, feature or token)."""
        run, epoch = self._run(request), self._epoch(request)
        return self._data.finding_values(run, self._finding(request), epoch, self._cmap(request))

    @route("/relevance", "cached_json")
    def _serve_relevance(self, request: wrappers.Request) -> dict[str, Any]:
        """A signal, tabular or token sample's relevance in one epoch as values with their colours."""
        run, epoch, sample = self._run(request), self._epoch(request), self._sample(request)
        bins = _integer(request, "bins", 0, MAX_BINS, 0)
        return self._data.relevance(run, epoch, sample, self._cmap(request), bins)

    @route("/trajectory", "json")
    def _serve_trajectory(self, request: wrappers.Request) -> dict[str, Any]:
        """A signal, tabular or token sample's relevance in every epoch (its timeline)."""
        run, sample = self._run(request), self._sample(request)
        bins = _integer(request, "bins", 0, MAX_BINS, 0)
        return self._data.relevance_timeline(run, sample, self._cmap(request), bins)
