"""The on-disk contract of an lrp-lightning run: paths, file names, schemas, column names, keys, tags.

One module names every fact that two parts of the package share about a run, as TensorBoard's plugins
keep theirs in ``metadata.py``: the callback writes by these names, analysis, the CLI and the
TensorBoard plugin read by them. Nobody else spells a path, a column, a manifest key or a scalar tag.
It imports only the standard library and PyArrow, so the plugin can import it cheaply.

Layout
------
A run is the logger's ``log_dir``; everything of ours lives below ``<run>/plugins/lrp/``
(:data:`STORE_SUBDIR`)::

    manifest.json                          format version, run metadata, the list of complete epochs
    probe.parquet                          one row per probe sample (PROBE_SCHEMA)
    attributions/epoch=000003/part-00000.parquet    one row per (sample, epoch) (ATTRIBUTION_SCHEMA),
    attributions/epoch=000003/part-00001.parquet    one part per rank, zstd
    attributions/epoch=000003/_commit.json          identity of this version of the epoch
    analysis/epoch=000003/<name>.parquet   analysis tables, tagged with the config hash that made them

Names starting with ``.`` (staging directories, moved-aside versions, temp files) are never part of
a committed state; readers ignore them (see :mod:`lrp_lightning.store.epochs`).

Relevance maps are stored channel-summed as float16 (little-endian, row-major), one ``binary`` value
of ``H * W * 2`` bytes per row; ``heatmap_shape`` in the manifest gives ``(H, W)``.

Versioning
----------
``format_version`` is ``"major.minor"``. Minor versions only add (columns, manifest keys); a reader
reads every minor version of its major version. A different major version is refused with
:class:`~lrp_lightning.store.UnsupportedFormatError`. Writing into a store of a newer minor version is
refused, since it could drop what the newer version added.

Scalars
-------
The callback and ``lrp-analyze`` log indicator scalars to TensorBoard under :data:`SCALAR_PREFIX`
(``lrp/``): the callback's per-epoch values (:data:`CALLBACK_SCALAR_TAGS`, plus :func:`metric_tag`
per explanation metric), the analysis' per-category indicators (:func:`category_tag` with a name of
:data:`CATEGORY_SCALARS`) and :data:`MEAN_STABILITY_TAG`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from .errors import _check_index

__all__ = [
    "ACCURACY",
    "ANALYSIS_DIR",
    "ANALYSIS_FORMAT_VERSION",
    "ANALYSIS_SCHEMAS",
    "ANALYSIS_TABLES",
    "ATTRIBUTIONS_DIR",
    "ATTRIBUTION_COLUMNS",
    "ATTRIBUTION_SCHEMA",
    "ATYPICAL",
    "BORDER_SHARE",
    "CALLBACK_SCALAR_TAGS",
    "CATEGORY",
    "CATEGORY_ALL",
    "CATEGORY_SCALARS",
    "CLASS_INDEX",
    "CLASS_NAME",
    "CLASS_NAMES_KEY",
    "CLUSTER",
    "CLUSTERING",
    "CLUSTERS_SCHEMA",
    "CLUSTERS_TABLE",
    "CLUSTER_COLUMN_PREFIX",
    "COMMIT_MARKER",
    "COMPACTNESS",
    "COMPRESSION",
    "CONCENTRATION",
    "CORNER_SHARE",
    "DATASET_INDEX",
    "EIGENGAP",
    "EIGENGAP_K",
    "EIGENVALUES",
    "EMBEDDING_COLUMN_PREFIX",
    "EPOCH",
    "EPOCHS_KEY",
    "EVENT",
    "FLAGGED",
    "FLAG_REASON",
    "FLAG_REGION",
    "FORMAT_VERSION",
    "FORMAT_VERSION_KEY",
    "GLOBAL_STEP",
    "HEATMAPS_IMAGE_TAG",
    "HEATMAP_SHAPE_KEY",
    "LABEL",
    "LIBRARY_VERSION_KEY",
    "LINEAGE_EVENTS",
    "LINEAGE_SCHEMA",
    "LINEAGE_TABLE",
    "MAJORITY_LABEL",
    "MANIFEST_FILE",
    "MATCH_JACCARD",
    "MAX_ROW_GROUP_ROWS",
    "MEAN_STABILITY_TAG",
    "MESSAGE",
    "META_ANALYSIS_CONFIG",
    "META_CONFIG_HASH",
    "META_FORMAT",
    "META_GRID_SHAPE",
    "META_HEATMAP_SHAPE",
    "META_SOURCE_COMMIT",
    "METRIC_PREFIX",
    "N_NEIGHBORS",
    "N_SAMPLES",
    "NONFINITE_SAMPLES_TAG",
    "PART_HASHES_KEY",
    "PART_HASH_BYTES",
    "PART_SIZES_KEY",
    "POINTS_SCHEMA",
    "POINTS_TABLE",
    "POSITIVE_SHARE_TAG",
    "PREDICTION",
    "PREVIOUS_CLUSTER",
    "PROBABILITY",
    "PROBE_ACCURACY_TAG",
    "PROBE_COLUMNS",
    "PROBE_FILE",
    "PROBE_SCHEMA",
    "PROTOTYPE",
    "PURITY",
    "RELEVANCE",
    "RELEVANCE_ABS_MEAN_TAG",
    "RELEVANCE_SUM",
    "RELEVANCE_SUM_MEAN_TAG",
    "REPLACED_PREFIX",
    "ROW_GROUP_BYTES",
    "RUN_INFO_KEYS",
    "RUN_METADATA_KEYS",
    "SAMPLE_ID",
    "SCALAR_PREFIX",
    "SCORE",
    "SELECTED_CLUSTERING",
    "SIZE",
    "SOURCES",
    "SPECTRAL",
    "SPECTRUM_SCHEMA",
    "SPECTRUM_TABLE",
    "STABILITY",
    "STAGING_PREFIX",
    "STATUS",
    "STORE_SUBDIR",
    "TARGET",
    "THUMBNAIL",
    "TRACK",
    "TYPICAL",
    "category_tag",
    "class_category",
    "cluster_column",
    "embedding_columns",
    "epoch_dirname",
    "metric_column",
    "metric_tag",
    "parse_epoch_dirname",
    "parse_replaced_dirname",
    "part_filename",
    "replaced_dirname",
    "staging_dirname",
]

# --------------------------------------------------------------------------------------------------
# Paths and file names
# --------------------------------------------------------------------------------------------------

FORMAT_VERSION = "1.1"
"""Store format written by this library, ``"major.minor"``. 1.1 added each part's size and hash to the
manifest's epoch entries (:data:`PART_SIZES_KEY`, :data:`PART_HASHES_KEY`) and Parquet page checksums."""

STORE_SUBDIR = Path("plugins", "lrp")
"""Where our files live inside a run directory (TensorBoard's convention for plugin files)."""

MANIFEST_FILE = "manifest.json"
PROBE_FILE = "probe.parquet"
ATTRIBUTIONS_DIR = "attributions"
ANALYSIS_DIR = "analysis"
COMMIT_MARKER = "_commit.json"
"""File in an epoch directory that names the commit (version) of the epoch its parts belong to."""
COMPRESSION = "zstd"

ROW_GROUP_BYTES = 32 * 2**20
"""Target size of one row group of an attribution part; the unit of streaming reads."""
MAX_ROW_GROUP_ROWS = 65_536

STAGING_PREFIX = ".staging-"
"""Start of the hidden directory names in which ranks stage an epoch (:func:`staging_dirname`)."""
REPLACED_PREFIX = ".replaced-"
"""Start of the hidden directory names of replaced epoch versions (:func:`replaced_dirname`)."""

_EPOCH_DIR_RE = re.compile(r"epoch=(\d+)")
_REPLACED_RE = re.compile(re.escape(REPLACED_PREFIX) + r"epoch=(\d+)-([0-9A-Za-z]+)")


def epoch_dirname(epoch: int) -> str:
    """Return the directory name of an epoch, e.g. ``epoch=000003``."""
    return f"epoch={epoch:06d}"


def part_filename(rank: int) -> str:
    """Return the file name of a rank's part, e.g. ``part-00001.parquet``."""
    return f"part-{rank:05d}.parquet"


def staging_dirname(epoch: int, global_step: int) -> str:
    """Return the hidden directory in which the ranks stage an epoch's parts before the commit."""
    return f"{STAGING_PREFIX}{epoch_dirname(epoch)}-step={global_step}"


def replaced_dirname(epoch: int, commit: str) -> str:
    """Return the hidden directory that a replaced version of an epoch is moved aside to."""
    return f"{REPLACED_PREFIX}{epoch_dirname(epoch)}-{commit}"


def parse_epoch_dirname(name: str) -> int | None:
    """Return the epoch of an :func:`epoch_dirname`, or None for any other name."""
    match = _EPOCH_DIR_RE.fullmatch(name)
    return int(match[1]) if match else None


def parse_replaced_dirname(name: str) -> tuple[int, str] | None:
    """Return ``(epoch, commit)`` of a :func:`replaced_dirname`, or None for any other name."""
    match = _REPLACED_RE.fullmatch(name)
    return (int(match[1]), match[2]) if match else None


# --------------------------------------------------------------------------------------------------
# Manifest keys
# --------------------------------------------------------------------------------------------------

FORMAT_VERSION_KEY = "format_version"
LIBRARY_VERSION_KEY = "library_version"
EPOCHS_KEY = "epochs"
"""The list of complete epochs, one entry each (:class:`~lrp_lightning.store.EpochInfo`)."""
HEATMAP_SHAPE_KEY = "heatmap_shape"
PART_SIZES_KEY = "sizes"
"""Epoch entry key (format 1.1): the size in bytes of each committed part, in the order of ``files``."""
PART_HASHES_KEY = "blake2b"
"""Epoch entry key (format 1.1): the BLAKE2b digest (:data:`PART_HASH_BYTES` bytes, hex) of each part."""
PART_HASH_BYTES = 32
"""Digest size of :data:`PART_HASHES_KEY`."""
CLASS_NAMES_KEY = "class_names"

RUN_METADATA_KEYS = (
    "model_class",
    "composite",
    "canonizers",
    "input_shape",
    HEATMAP_SHAPE_KEY,
    CLASS_NAMES_KEY,
    "target_mode",
    "probe",
    "metadata",
)
"""Manifest keys that describe a run; resuming into a store requires all of them to be equal."""

RUN_INFO_KEYS = (
    FORMAT_VERSION_KEY,
    LIBRARY_VERSION_KEY,
    "model_class",
    "composite",
    "canonizers",
    "target_mode",
    "input_shape",
    HEATMAP_SHAPE_KEY,
    CLASS_NAMES_KEY,
)
"""Manifest keys that describe a run to a person (the plugin's run view), in display order."""

# Schema-metadata keys (Parquet key-value metadata of our files).
META_FORMAT = b"lrp.format_version"
"""Format version that wrote a Parquet file."""
META_HEATMAP_SHAPE = b"lrp.heatmap_shape"
"""``[H, W]`` (JSON) of the relevance maps of an attribution table."""
META_CONFIG_HASH = b"lrp.config_hash"
"""Hash of the analysis configuration that produced an analysis table (its cache key)."""
META_SOURCE_COMMIT = b"lrp.source_commit"
"""Commit id of the epoch's attributions that an analysis table was made from."""
META_ANALYSIS_CONFIG = b"lrp.analysis_config"
"""The analysis configuration (JSON) that produced an analysis table."""
META_GRID_SHAPE = b"lrp.grid_shape"
"""``[h, w]`` (JSON) of the analysis grid of prototypes and spectral maps."""

# --------------------------------------------------------------------------------------------------
# Attribution parts and the probe set
# --------------------------------------------------------------------------------------------------

SAMPLE_ID = "sample_id"
EPOCH = "epoch"
GLOBAL_STEP = "global_step"
LABEL = "label"
PREDICTION = "prediction"
TARGET = "target"
SCORE = "score"
PROBABILITY = "probability"
RELEVANCE_SUM = "relevance_sum"
RELEVANCE = "relevance"
DATASET_INDEX = "dataset_index"
THUMBNAIL = "thumbnail"

ATTRIBUTION_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(EPOCH, pa.int32(), nullable=False),
        pa.field(GLOBAL_STEP, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(PREDICTION, pa.int64(), nullable=False),
        pa.field(TARGET, pa.int64(), nullable=False),
        pa.field(SCORE, pa.float32(), nullable=False),
        pa.field(PROBABILITY, pa.float32(), nullable=False),
        pa.field(RELEVANCE_SUM, pa.float32(), nullable=False),
        pa.field(
            RELEVANCE,
            pa.binary(),
            nullable=False,
            metadata={b"encoding": b"float16 little-endian, row-major; heatmap_shape in manifest.json"},
        ),
    ]
)
"""Required columns of an attribution part, in order. Extra numeric columns may follow."""
ATTRIBUTION_COLUMNS: tuple[str, ...] = tuple(ATTRIBUTION_SCHEMA.names)

METRIC_PREFIX = "metric_"
"""Extra attribution columns of the explanation metrics are named ``metric_<name>`` (:func:`metric_column`)."""

PROBE_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(DATASET_INDEX, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(THUMBNAIL, pa.binary(), nullable=True, metadata={b"encoding": b"PNG"}),
    ]
)
"""Required columns of ``probe.parquet``, in order. User metadata columns of any type may follow."""
PROBE_COLUMNS: tuple[str, ...] = tuple(PROBE_SCHEMA.names)


def metric_column(name: str) -> str:
    """Return the attribution column of an explanation metric, e.g. ``"metric_sparseness"``."""
    return f"{METRIC_PREFIX}{name}"


# --------------------------------------------------------------------------------------------------
# Scalar tags (TensorBoard)
# --------------------------------------------------------------------------------------------------

SCALAR_PREFIX = "lrp/"
"""Every scalar and image that lrp-lightning logs to TensorBoard has a tag starting with this."""

RELEVANCE_ABS_MEAN_TAG = "lrp/relevance_abs_mean"
"""Mean absolute relevance per map value over the probe set."""
POSITIVE_SHARE_TAG = "lrp/positive_share"
"""Share of the absolute relevance that is positive."""
RELEVANCE_SUM_MEAN_TAG = "lrp/relevance_sum_mean"
"""Mean total relevance per sample (about 1 for a conserving explanation)."""
PROBE_ACCURACY_TAG = "lrp/probe_accuracy"
"""Accuracy of the model on the labelled probe samples."""
CALLBACK_SCALAR_TAGS = (RELEVANCE_ABS_MEAN_TAG, POSITIVE_SHARE_TAG, RELEVANCE_SUM_MEAN_TAG, PROBE_ACCURACY_TAG)
"""Scalars the callback logs every explained epoch (besides :func:`metric_tag` per metric)."""
NONFINITE_SAMPLES_TAG = "lrp/nonfinite_samples"
"""Probe samples whose output or relevance held NaN or infinity (left out of the scalars above); logged
only in epochs that have such samples."""
HEATMAPS_IMAGE_TAG = "lrp/heatmaps"
"""Image (TensorBoard's Images tab) of the callback's grid of inputs and heatmaps."""

CATEGORY_SCALARS = (
    "eigengap",
    "eigengap_k",
    "flagged_clusters",
    "max_concentration",
    "max_border_share",
    "max_corner_share",
    "min_compactness",
)
"""Indicators that the analysis logs per category as ``lrp/<category>/<name>`` (:func:`category_tag`)."""
MEAN_STABILITY_TAG = "lrp/all/mean_stability"
"""Mean cosine similarity of the samples' maps to the previous complete epoch's."""


def metric_tag(name: str) -> str:
    """Return the scalar tag of an explanation metric's mean, e.g. ``"lrp/metric_sparseness"``."""
    return f"{SCALAR_PREFIX}{metric_column(name)}"


def category_tag(category: str, name: str) -> str:
    """Return the scalar tag of an analysis indicator of a category, e.g. ``"lrp/class_3/eigengap"``."""
    return f"{SCALAR_PREFIX}{category}/{name}"


# --------------------------------------------------------------------------------------------------
# Analysis tables
# Schemas of the tables that the SpRAy analysis (lrp_lightning.analysis, lrp-analyze) writes with
# RunStore.write_analysis_table and that the TensorBoard plugin reads. Every table of one analysis of
# an epoch carries the same config hash; a reader takes them together only when the hashes agree.
# --------------------------------------------------------------------------------------------------

ANALYSIS_FORMAT_VERSION = "1.0"
"""Version of the analysis tables' layout (``"major.minor"``); part of every analysis cache key."""

POINTS_TABLE = "points"
CLUSTERS_TABLE = "clusters"
SPECTRUM_TABLE = "spectrum"
LINEAGE_TABLE = "lineage"
ANALYSIS_TABLES: tuple[str, ...] = (POINTS_TABLE, CLUSTERS_TABLE, LINEAGE_TABLE, SPECTRUM_TABLE)
"""Tables of one analysis of an epoch, in writing order (``spectrum`` last)."""

CATEGORY = "category"
"""Which samples were analysed together: ``"all"`` or ``"class_<index>"`` (see :func:`class_category`)."""
CATEGORY_ALL = "all"
CLASS_INDEX = "class_index"
CLASS_NAME = "class_name"
SPECTRAL = "spectral"
STABILITY = "stability"
CLUSTERING = "clustering"
CLUSTER = "cluster"
SIZE = "size"
PURITY = "purity"
MAJORITY_LABEL = "majority_label"
ACCURACY = "accuracy"
PROTOTYPE = "prototype"
TYPICAL = "typical"
ATYPICAL = "atypical"
CONCENTRATION = "concentration"
BORDER_SHARE = "border_share"
CORNER_SHARE = "corner_share"
COMPACTNESS = "compactness"
EIGENGAP = "eigengap"
EIGENGAP_K = "eigengap_k"
FLAGGED = "flagged"
FLAG_REGION = "flag_region"
FLAG_REASON = "flag_reason"
TRACK = "track"
PREVIOUS_CLUSTER = "previous_cluster"
MATCH_JACCARD = "match_jaccard"
EVENT = "event"
SOURCES = "sources"
EIGENVALUES = "eigenvalues"
N_SAMPLES = "n_samples"
N_NEIGHBORS = "n_neighbors"
SELECTED_CLUSTERING = "selected_clustering"
STATUS = "status"
MESSAGE = "message"

CLUSTER_COLUMN_PREFIX = "cluster."
EMBEDDING_COLUMN_PREFIX = "embedding."

LINEAGE_EVENTS = ("born", "continued", "split", "merged", "vanished")
"""Values of the ``event`` column: how a cluster relates to the previous epoch's clusters."""


def class_category(class_index: int) -> str:
    """Return the category name of one class, e.g. ``"class_3"``."""
    return f"class_{_check_index(class_index, 'class_index')}"


def cluster_column(clustering: str) -> str:
    """Return the points-table column of a clustering's labels, e.g. ``"cluster.kmeans_4"``."""
    return f"{CLUSTER_COLUMN_PREFIX}{clustering}"


def embedding_columns(method: str) -> tuple[str, str]:
    """Return the points-table columns of a 2-D embedding, e.g. ``("embedding.tsne.x", "embedding.tsne.y")``."""
    return f"{EMBEDDING_COLUMN_PREFIX}{method}.x", f"{EMBEDDING_COLUMN_PREFIX}{method}.y"


POINTS_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(SAMPLE_ID, pa.int64(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(PREDICTION, pa.int64(), nullable=False),
        pa.field(TARGET, pa.int64(), nullable=False),
        pa.field(SPECTRAL, pa.list_(pa.float32()), nullable=False),
        pa.field(STABILITY, pa.float32(), nullable=True),
    ]
)
"""Leading columns of ``points`` (one row per category and sample). Then one ``int32`` column per
clustering (:func:`cluster_column`, -1 for noise, null where the clustering was not run for the
category) and two ``float32`` columns per 2-D embedding (:func:`embedding_columns`). ``spectral`` holds
the sample's coordinates in the first eigenvectors of the normalised Laplacian; ``stability`` the
cosine similarity of its preprocessed map to the previous complete epoch's (null at the first)."""

CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLUSTERING, pa.string(), nullable=False),
        pa.field(CLUSTER, pa.int32(), nullable=False),
        pa.field(SIZE, pa.int64(), nullable=False),
        pa.field(PURITY, pa.float32(), nullable=False),
        pa.field(MAJORITY_LABEL, pa.int64(), nullable=False),
        pa.field(ACCURACY, pa.float32(), nullable=False),
        pa.field(PROTOTYPE, pa.list_(pa.float32()), nullable=False),
        pa.field(TYPICAL, pa.list_(pa.int64()), nullable=False),
        pa.field(ATYPICAL, pa.list_(pa.int64()), nullable=False),
        pa.field(CONCENTRATION, pa.float32(), nullable=False),
        pa.field(BORDER_SHARE, pa.float32(), nullable=False),
        pa.field(CORNER_SHARE, pa.float32(), nullable=False),
        pa.field(COMPACTNESS, pa.float32(), nullable=False),
        pa.field(EIGENGAP, pa.float32(), nullable=False),
        pa.field(FLAGGED, pa.bool_(), nullable=False),
        pa.field(FLAG_REGION, pa.string(), nullable=True),
        pa.field(FLAG_REASON, pa.string(), nullable=True),
        pa.field(TRACK, pa.string(), nullable=False),
        pa.field(PREVIOUS_CLUSTER, pa.int32(), nullable=True),
        pa.field(MATCH_JACCARD, pa.float32(), nullable=True),
        pa.field(EVENT, pa.string(), nullable=False),
    ]
)
"""``clusters``: one row per (category, clustering, cluster). ``prototype`` is the mean of the members'
L1-normalised signed maps on the analysis grid (row-major, shape in :data:`META_GRID_SHAPE`);
``typical``/``atypical`` are sample ids nearest to / farthest from the cluster's centre in the spectral
embedding; shares are fractions of the members' absolute relevance; ``track`` is the cluster's identity
over epochs (``"<epoch born>:<cluster then>"``), ``event`` one of :data:`LINEAGE_EVENTS`."""

LINEAGE_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLUSTERING, pa.string(), nullable=False),
        pa.field(CLUSTER, pa.int32(), nullable=True),
        pa.field(TRACK, pa.string(), nullable=False),
        pa.field(EVENT, pa.string(), nullable=False),
        pa.field(PREVIOUS_CLUSTER, pa.int32(), nullable=True),
        pa.field(SOURCES, pa.list_(pa.int32()), nullable=False),
        pa.field(MATCH_JACCARD, pa.float32(), nullable=True),
    ]
)
"""``lineage``: how each cluster of an epoch relates to the previous complete epoch's clusters, plus one
row (``cluster`` null) per previous cluster that ``vanished``. ``sources`` lists the previous clusters
that gave a substantial share of their members."""

SPECTRUM_SCHEMA = pa.schema(
    [
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(CLASS_INDEX, pa.int64(), nullable=True),
        pa.field(CLASS_NAME, pa.string(), nullable=True),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(MESSAGE, pa.string(), nullable=True),
        pa.field(N_SAMPLES, pa.int64(), nullable=False),
        pa.field(N_NEIGHBORS, pa.int64(), nullable=False),
        pa.field(EIGENVALUES, pa.list_(pa.float64()), nullable=False),
        pa.field(EIGENGAP_K, pa.int64(), nullable=False),
        pa.field(EIGENGAP, pa.float32(), nullable=False),
        pa.field(SELECTED_CLUSTERING, pa.string(), nullable=True),
    ]
)
"""``spectrum``: one row per category. ``status`` is ``"ok"`` or ``"skipped"`` (``message`` says why, e.g.
a class with too few samples); ``eigenvalues`` are the smallest eigenvalues of the normalised
Laplacian, ascending; ``eigengap_k`` the number of clusters the largest eigengap suggests."""

ANALYSIS_SCHEMAS: dict[str, pa.Schema] = {
    POINTS_TABLE: POINTS_SCHEMA,
    CLUSTERS_TABLE: CLUSTERS_SCHEMA,
    LINEAGE_TABLE: LINEAGE_SCHEMA,
    SPECTRUM_TABLE: SPECTRUM_SCHEMA,
}
"""Required leading columns of each analysis table, by name. Readers check a table against its schema
(:meth:`RunStore.read_analysis_table`): a table without these columns, or with columns of other types,
is a damaged table, recomputed by ``lrp-analyze``."""
