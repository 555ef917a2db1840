"""The on-disk contract of an lrp-lightning run: paths, file names, schemas, column names, keys, tags.

One module names every fact that two parts of the package share about a run, as TensorBoard's plugins
keep theirs in ``metadata.py``: the callback writes by these names, analysis, the CLI and the
TensorBoard plugin read by them. Nobody else spells a path, a column, a manifest key or a scalar tag.
It imports only the standard library and PyArrow, so the plugin can import it cheaply.

Layout
------
A run is the logger's ``log_dir``; everything of ours lives below ``<run>/plugins/lrp/``
(:data:`STORE_SUBDIR`)::

    manifest.json                          format version, run metadata and run id, the list of complete epochs
    .writer.lock                           only while a writer runs (or after it crashed): who writes
    probe.parquet                          one row per probe sample (PROBE_SCHEMA)
    attributions/epoch_000003/part-00000.parquet    one row per (sample, epoch) (ATTRIBUTION_SCHEMA),
    attributions/epoch_000003/part-00001.parquet    one part per rank, zstd
    attributions/epoch_000003/_commit.json          identity of this version of the epoch
    analysis/<name>/epoch_000003.parquet   analysis table <name> of epoch 3 (e.g. points, clusters),
                                           tagged with the config hash that made it

Names starting with ``.`` (staging directories, moved-aside versions, temp files) are never part of
a committed state; readers ignore them (see :mod:`lrp_lightning.store.epochs`).

Interoperability: the store is plain Parquet that other tools read directly. No folder is named
``key=value``, so no reader infers a (string or dictionary) partition column; the epoch comes from the
``int32`` ``epoch`` column that every attribution part and every analysis table holds, and the folder
or file name (``epoch_000003``) always agrees with it (readers check). Hence, with an integer epoch::

    pandas.read_parquet("<run>/plugins/lrp/attributions")          # and ".../analysis/points"
    pyarrow.dataset.dataset("<run>/plugins/lrp/attributions")
    duckdb.read_parquet("<run>/plugins/lrp/attributions/epoch_*/*.parquet")
    polars.read_parquet("<run>/plugins/lrp/attributions/epoch_*/*.parquet")   # or ".../analysis/points"

The ``epoch_*`` glob leaves out the hidden directories of an epoch being written (DuckDB and Polars do
not skip hidden names) and ``_commit.json`` (Polars refuses a folder of mixed file types).

Relevance maps are stored channel-summed as float16 (little-endian, row-major), one ``binary`` value
of ``H * W * 2`` bytes per row; ``heatmap_shape`` in the manifest gives ``(H, W)``.

Modalities
----------
The manifest's :data:`MODALITY_KEY` says what a sample is, one of :data:`MODALITIES`: ``"image"``
(maps ``(H, W)``), ``"signal"`` (a 1-D sequence, maps ``(1, L)``), ``"tabular"`` (a feature vector,
maps ``(1, F)``; :data:`FEATURE_NAMES_KEY` names the features when known) or ``"tokens"``. A token
sample has a length of its own: ``probe.parquet`` holds its token ids with the padding removed
(:data:`TOKEN_IDS`) and, when the writer was given a tokenizer or vocabulary, the token strings
(:data:`TOKENS`); each attribution row holds its relevance per token (:data:`TOKEN_RELEVANCE`, as many
values as the sample's token ids). The fixed-shape ``relevance`` column of a token run is that
relevance padded with zeros (or cut) to :data:`MAX_TOKENS_KEY` values, ``heatmap_shape`` being
``(1, max_tokens)``, so that readers of maps (gallery, SpRAy) work on every modality. Stores written
before 2.1 have no modality key: readers infer it from ``input_shape`` (:func:`infer_modality`).

Methods and analyses
--------------------
A run may explain its probe set with several attribution methods (an LRP composite, the gradient,
...). :data:`METHODS_KEY` lists them, the first being the default; every attribution row names its
method in :data:`METHOD`, all methods of an epoch sharing its parts and commit. Analysis tables of the
default analysis of the first method stay in ``analysis/<table>/``; every other (analysis, method)
pair has its own folder ``analyses/<analysis>/<method>/<table>/`` (:func:`analysis_dirname`).

Versioning
----------
``format_version`` is ``"major.minor"``. Minor versions only add (columns, manifest keys); a reader
reads every minor version of its major version. Another major version changes the layout: a newer
one is refused with :class:`~lrp_lightning.store.UnsupportedFormatError`; an older one this library
still reads (:data:`READABLE_MAJOR_VERSIONS`) but writes only after migrating the store in place
(:meth:`RunStore.migrate <lrp_lightning.store.RunStore.migrate>`, which ``lrp-analyze`` and resuming a
run do; the protocol is in :mod:`lrp_lightning.store.epochs`). Writing into a store of a newer minor
version is refused, since it could drop what the newer version added.

Format 1.x named folders hive-style, ``attributions/epoch=000003/`` and ``analysis/epoch=000003/<name>.parquet``
(:func:`legacy_epoch_dirname`); 2.0 renamed them so that Parquet readers do not infer a string or
dictionary ``epoch`` partition that clashes with the integer column.

Scalars
-------
The callback and ``lrp-analyze`` log indicator scalars to TensorBoard under :data:`SCALAR_PREFIX`
(``lrp/``): the callback's per-epoch values (:data:`CALLBACK_SCALAR_TAGS`, plus :func:`metric_tag`
per explanation metric), the analysis' per-category indicators (:func:`category_tag` with a name of
:data:`CATEGORY_SCALARS`) and :data:`MEAN_STABILITY_TAG`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from .errors import _check_index

# __all__ (every public name defined here) is computed at the end of the module.

# --------------------------------------------------------------------------------------------------
# Paths and file names
# --------------------------------------------------------------------------------------------------

FORMAT_VERSION = "2.2"
"""Store format written by this library, ``"major.minor"``. 1.1 added each part's size and hash to the
manifest's epoch entries (:data:`PART_SIZES_KEY`, :data:`PART_HASHES_KEY`) and Parquet page checksums.
2.0 renamed the epoch folders from ``epoch=000003`` to ``epoch_000003``, moved analysis tables to
``analysis/<name>/epoch_000003.parquet`` and gave them an ``epoch`` column (see Interoperability).
2.1 added the modality (:data:`MODALITY_KEY`, :data:`FEATURE_NAMES_KEY`, :data:`MAX_TOKENS_KEY`) and
the token columns (:data:`TOKEN_IDS`, :data:`TOKENS`, :data:`TOKEN_RELEVANCE`); see "Modalities".
2.2 added several attribution methods per run (:data:`METHODS_KEY`, the :data:`METHOD` column) and named
analyses (:func:`analysis_dirname`); see "Methods and analyses"."""
READABLE_MAJOR_VERSIONS = (1, 2)
"""Major format versions this library reads; stores of an older one are migrated before writing."""

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
WRITER_LOCK_FILE = ".writer.lock"
"""Hidden file in the store directory that the live writer of the run holds locked
(:class:`~lrp_lightning.store.WriterLock`); it names that writer's pid, host and start time."""

_EPOCH_DIR_RE = re.compile(r"epoch_(\d{6,})")
_LEGACY_EPOCH_DIR_RE = re.compile(r"epoch=(\d+)")
_REPLACED_RE = re.compile(re.escape(REPLACED_PREFIX) + r"epoch[_=](\d+)-([0-9A-Za-z]+)")
_ANALYSIS_FILE_RE = re.compile(r"epoch_(\d{6,})\.parquet")


def epoch_dirname(epoch: int) -> str:
    """Return the directory name of an epoch, e.g. ``epoch_000003``.

    Not ``epoch=000003``: Parquet readers take a ``key=value`` folder for a partition and add a string
    or dictionary ``epoch`` column that clashes with the integer one in the files.
    """
    return f"epoch_{epoch:06d}"


def legacy_epoch_dirname(epoch: int) -> str:
    """Return the directory name of an epoch in format 1.x stores, e.g. ``epoch=000003`` (read and migrated)."""
    return f"epoch={epoch:06d}"


def part_filename(rank: int) -> str:
    """Return the file name of a rank's part, e.g. ``part-00001.parquet``."""
    return f"part-{rank:05d}.parquet"


def analysis_filename(epoch: int) -> str:
    """Return the file name of an epoch's analysis table in ``analysis/<name>/``, e.g. ``epoch_000003.parquet``."""
    return f"{epoch_dirname(epoch)}.parquet"


def staging_dirname(epoch: int, global_step: int) -> str:
    """Return the hidden directory in which the ranks stage an epoch's parts before the commit."""
    return f"{STAGING_PREFIX}{epoch_dirname(epoch)}-step_{global_step}"


def replaced_dirname(epoch: int, commit: str) -> str:
    """Return the hidden directory that a replaced version of an epoch is moved aside to."""
    return f"{REPLACED_PREFIX}{epoch_dirname(epoch)}-{commit}"


def legacy_replaced_dirname(epoch: int, commit: str) -> str:
    """Return :func:`replaced_dirname` as format 1.x stores name it (read and migrated)."""
    return f"{REPLACED_PREFIX}{legacy_epoch_dirname(epoch)}-{commit}"


def parse_epoch_dirname(name: str) -> int | None:
    """Return the epoch of an :func:`epoch_dirname`, or None for any other name."""
    match = _EPOCH_DIR_RE.fullmatch(name)
    return int(match[1]) if match else None


def parse_legacy_epoch_dirname(name: str) -> int | None:
    """Return the epoch of a :func:`legacy_epoch_dirname`, or None for any other name."""
    match = _LEGACY_EPOCH_DIR_RE.fullmatch(name)
    return int(match[1]) if match else None


def parse_analysis_filename(name: str) -> int | None:
    """Return the epoch of an :func:`analysis_filename`, or None for any other name."""
    match = _ANALYSIS_FILE_RE.fullmatch(name)
    return int(match[1]) if match else None


def parse_replaced_dirname(name: str) -> tuple[int, str] | None:
    """Return ``(epoch, commit)`` of a :func:`replaced_dirname` (or its format 1.x name), or None."""
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
MODALITY_KEY = "modality"
"""Manifest key (format 2.1): what a sample is, one of :data:`MODALITIES`."""
MODALITY_IMAGE = "image"
MODALITY_SIGNAL = "signal"
MODALITY_TABULAR = "tabular"
MODALITY_TOKENS = "tokens"
MODALITIES = (MODALITY_IMAGE, MODALITY_SIGNAL, MODALITY_TABULAR, MODALITY_TOKENS)
"""Values of :data:`MODALITY_KEY`."""
FEATURE_NAMES_KEY = "feature_names"
"""Manifest key (format 2.1): the name of each feature of a tabular run (list of str), or null."""
MAX_TOKENS_KEY = "max_tokens"
METHODS_KEY = "methods"
"""Manifest key (format 2.2): the run's attribution methods in order, each ``{"name": ..., ...}``; the first
is the default. Older stores have none: their one method is named by ``composite`` (:func:`method_names`)."""
DEFAULT_METHOD = "default"
"""Name of the one method of a store whose manifest names neither methods nor a composite."""
"""Manifest key (format 2.1): the width of a token run's ``relevance`` maps (``heatmap_shape`` is
``(1, max_tokens)``), or null for other modalities."""

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
    MODALITY_KEY,
    FEATURE_NAMES_KEY,
    MAX_TOKENS_KEY,
    METHODS_KEY,
)
"""Manifest keys that describe a run; resuming into a store requires all of them to be equal (a key
that a store of an older minor version lacks is not compared, and is added by the resume)."""

RUN_ID_KEY = "run_id"
"""Manifest key: the id of the training that owns the store (a random hex string, see
:func:`~lrp_lightning.store.new_run_id`). Only that training writes into it: a resume from its
checkpoint carries the same id. Stores of format 1.0 and those created without an id have none."""

REVISIONS_KEY = "revisions"
"""Manifest key: what the ``ClArCCallback`` did, a list of revision records (one per revised finding),
each a dict with the keys below; written by :meth:`RunStore.record_revisions`."""
REVISION_FINDING_ID = "finding_id"
REVISION_CATEGORY = "category"
REVISION_REGION = "region"
REVISION_REGION_CELLS = "region_cells"
REVISION_GRID = "grid"
REVISION_ARTIFACT_CLASS = "artifact_class"
REVISION_MEMBER_IDS = "member_ids"
REVISION_METHOD = "method"
REVISION_SETTINGS = "settings"
REVISION_CAV = "cav"
REVISION_FOUND_EPOCH = "found_epoch"
REVISION_START_EPOCH = "start_epoch"
REVISION_EPOCHS = "epochs"
"""Revision record key: the measures per epoch, a list of ``{"epoch": e, <name>: value}`` with the
names of :data:`REVISION_SCALARS` (null where not measured)."""
REVISION_STATUS = "status"
"""Revision record key: ``"revising"``, or ``"nothing to revise"`` for the record of a run whose rule
found no finding (its other keys are null)."""
REVISION_STATUS_ACTIVE = "revising"
REVISION_STATUS_NONE = "nothing to revise"
REVISION_RECORD_KEYS = (
    REVISION_FINDING_ID,
    REVISION_CATEGORY,
    REVISION_REGION,
    REVISION_REGION_CELLS,
    REVISION_GRID,
    REVISION_ARTIFACT_CLASS,
    REVISION_MEMBER_IDS,
    REVISION_METHOD,
    REVISION_SETTINGS,
    REVISION_CAV,
    REVISION_FOUND_EPOCH,
    REVISION_START_EPOCH,
    REVISION_EPOCHS,
    REVISION_STATUS,
)
"""The keys of a revision record, in order."""

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
    MODALITY_KEY,
    FEATURE_NAMES_KEY,
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
META_TOKEN_VOCABULARY = b"lrp.token_vocabulary"
"""Token runs: token id of each analysis-grid column (JSON list); one last column holds every other token."""

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
TOKEN_IDS = "token_ids"
"""``probe.parquet`` column of token runs: ``list<int32>``, the sample's token ids, padding removed."""
TOKENS = "tokens"
"""``probe.parquet`` column of token runs written with a tokenizer or vocabulary: ``list<string>``, one
string per token id (null without one)."""
METHOD = "method"
"""Attribution column (format 2.2): the method that made the row (``string``). Rows without it (older
stores) are the first method's; an epoch holds one row per (method, sample id)."""
TOKEN_RELEVANCE = "token_relevance"
"""Attribution column of token runs: ``list<float32>``, the relevance of each of the sample's tokens."""

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
"""Required columns of an attribution part, in order. Extra numeric columns may follow, and in token
runs :data:`TOKEN_RELEVANCE_FIELD`."""
TOKEN_RELEVANCE_FIELD = pa.field(TOKEN_RELEVANCE, pa.list_(pa.float32()), nullable=False)
METHOD_FIELD = pa.field(METHOD, pa.string(), nullable=False)
TOKEN_ID_FIELD = pa.field(TOKEN_IDS, pa.list_(pa.int32()), nullable=False)
TOKEN_STRING_FIELD = pa.field(TOKENS, pa.list_(pa.string()), nullable=True)
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
"""Required columns of ``probe.parquet``, in order. Token runs add :data:`TOKEN_ID_FIELD` and
:data:`TOKEN_STRING_FIELD`; user metadata columns of any type may follow."""
PROBE_COLUMNS: tuple[str, ...] = tuple(PROBE_SCHEMA.names)


def infer_modality(input_shape: Sequence[int] | None, *, integer: bool = False) -> str | None:
    """The modality of samples of ``input_shape`` (without the batch axis): integer inputs are tokens,
    ``(C, H, W)`` an image, ``(C, L)`` a signal and ``(F,)`` tabular; None when the shape says nothing.
    A 1-D signal stored as ``(L,)`` is told apart from a feature vector only by an explicit modality."""
    if integer:
        return MODALITY_TOKENS
    if input_shape is None:
        return None
    return {3: MODALITY_IMAGE, 2: MODALITY_SIGNAL, 1: MODALITY_TABULAR}.get(len(input_shape))


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


REVISION_SCALARS = ("artifact_sensitivity", "finding_share", "rest_share", "clean_accuracy", "revising", "penalty")
"""What the ``ClArCCallback`` logs per epoch as ``lrp/revise_<name>`` (:func:`revision_tag`): the share
of clean samples of other classes that flip to the artifact's class with the artifact pasted in, the
finding's samples' and the rest of its class's share of absolute relevance in its region, the
accuracy on the probe samples without the artifact, 1 from the epoch the revision acts on (0 before),
and RR-ClArC's mean penalty over the epoch's training steps."""


def revision_tag(name: str) -> str:
    """Return the scalar tag of a revision measure, e.g. ``"lrp/revise_artifact_sensitivity"``."""
    return f"{SCALAR_PREFIX}revise_{name}"


def metric_tag(name: str) -> str:
    """Return the scalar tag of an explanation metric's mean, e.g. ``"lrp/metric_sparseness"``."""
    return f"{SCALAR_PREFIX}{metric_column(name)}"


def method_tag(tag: str, method: str) -> str:
    """Return the per-method scalar tag of ``tag``, e.g. ``"lrp/metric_sparseness/gradient"`` (runs with
    several methods log every callback scalar once per method this way; the first method also as ``tag``)."""
    return f"{tag}/{method}"


METHODS_LAYOUT_CATEGORY = "LRP methods"
"""Category of the Custom Scalars layout that charts each callback scalar of every method in one chart."""


def category_tag(category: str, name: str) -> str:
    """Return the scalar tag of an analysis indicator of a category, e.g. ``"lrp/class_3/eigengap"``."""
    return f"{SCALAR_PREFIX}{category}/{name}"


# --------------------------------------------------------------------------------------------------
# Analysis tables
# Schemas of the tables that the SpRAy analysis (lrp_lightning.analysis, lrp-analyze) writes with
# RunStore.write_analysis_table and that the TensorBoard plugin reads. Every table of one analysis of
# an epoch carries the same config hash; a reader takes them together only when the hashes agree.
# --------------------------------------------------------------------------------------------------

DEFAULT_ANALYSIS = "default"
"""Name of the analysis that ``lrp-analyze`` writes without ``--name``."""
ANALYSES_DIR = "analyses"


def analysis_dirname(analysis: str, method: str, default_method: str) -> str:
    """The folder of an analysis' tables, relative to the store: :data:`ANALYSIS_DIR` for the default
    analysis of the first method (as before 2.2), else ``analyses/<analysis>/<method>``."""
    if analysis == DEFAULT_ANALYSIS and method == default_method:
        return ANALYSIS_DIR
    return f"{ANALYSES_DIR}/{analysis}/{method}"


ANALYSIS_FORMAT_VERSION = "1.0"
"""Version of the analysis tables' layout (``"major.minor"``); part of every analysis cache key."""

POINTS_TABLE = "points"
CLUSTERS_TABLE = "clusters"
SPECTRUM_TABLE = "spectrum"
LINEAGE_TABLE = "lineage"
FINDINGS_TABLE = "findings"
ANALYSIS_TABLES: tuple[str, ...] = (FINDINGS_TABLE, POINTS_TABLE, CLUSTERS_TABLE, LINEAGE_TABLE, SPECTRUM_TABLE)
"""Tables of one analysis of an epoch, in writing order (``findings`` first, ``spectrum`` last)."""

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


# --------------------------------------------------------------------------------------------------
# The findings table: one row per finding seen in an epoch (lrp_lightning.analysis.findings writes it
# under the epoch's analysis key, first of the analysis tables). A run's findings with their lineage are
# the union over its epochs' tables; finding_id links the rows of one finding.
# --------------------------------------------------------------------------------------------------

FINDING_ID = "finding_id"
FINDING_KIND = "kind"
FINDING_REGION = "region"
FINDING_REGION_DETAIL = "region_detail"
FINDING_REGION_CELLS = "region_cells"
FIRST_EPOCH = "first_epoch"
EPOCHS_SEEN = "epochs_seen"
MEMBER_IDS = "member_ids"
N_MEMBERS = "n_members"
FINDING_SHARE = "share"
REST_SHARE = "rest_share"
FINDING_STRENGTH = "strength"
INPUT_SPREAD = "input_spread"
P_VALUE = "p_value"
Q_VALUE = "q_value"
FINDING_CLUSTERS = "clusters"
FINDING_REASON = "reason"

FINDING_KIND_ARTIFACT = "artifact"
FINDING_KIND_FEATURE = "feature concentration"

FINDINGS_SCHEMA = pa.schema(
    [
        pa.field(FINDING_ID, pa.string(), nullable=False),
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(FINDING_KIND, pa.string(), nullable=False),
        pa.field(FINDING_REGION, pa.string(), nullable=False),
        pa.field(FINDING_REGION_DETAIL, pa.string()),
        pa.field(FINDING_REGION_CELLS, pa.list_(pa.int32()), nullable=False),
        pa.field(FIRST_EPOCH, pa.int64(), nullable=False),
        pa.field(EPOCHS_SEEN, pa.list_(pa.int64()), nullable=False),
        pa.field(MEMBER_IDS, pa.list_(pa.int64()), nullable=False),
        pa.field(N_MEMBERS, pa.int64(), nullable=False),
        pa.field(FINDING_SHARE, pa.float64(), nullable=False),
        pa.field(REST_SHARE, pa.float64(), nullable=False),
        pa.field(FINDING_STRENGTH, pa.float64(), nullable=False),
        pa.field(INPUT_SPREAD, pa.float64()),
        pa.field(P_VALUE, pa.float64(), nullable=False),
        pa.field(Q_VALUE, pa.float64(), nullable=False),
        pa.field(FINDING_CLUSTERS, pa.list_(pa.string()), nullable=False),
        pa.field(FINDING_REASON, pa.string(), nullable=False),
    ]
)
"""Columns of the ``findings`` analysis table.

``region_cells``: flat indices of the region's cells on the analysis grid (row-major);
``epochs_seen``: the epochs up to this one in which the finding was seen; ``share`` and ``rest_share``:
the members' and the rest of the category's share of absolute relevance in the region;
``strength``: ``share - rest_share``; ``input_spread``: evidence (b), null without stored inputs;
``p_value``/``q_value``: permutation p value and its Benjamini-Hochberg adjustment; ``clusters``:
the merged clusters as ``"<category>/<clustering>/<cluster>"``.
"""


ANALYSIS_SCHEMAS: dict[str, pa.Schema] = {
    POINTS_TABLE: POINTS_SCHEMA,
    CLUSTERS_TABLE: CLUSTERS_SCHEMA,
    LINEAGE_TABLE: LINEAGE_SCHEMA,
    SPECTRUM_TABLE: SPECTRUM_SCHEMA,
    FINDINGS_TABLE: FINDINGS_SCHEMA,
}
"""Required leading columns of each analysis table, by name. Readers check a table against its schema
(:meth:`RunStore.read_analysis_table`): a table without these columns, or with columns of other types,
is a damaged table, recomputed by ``lrp-analyze``."""

__all__ = sorted(
    name
    for name, value in list(globals().items())
    if not name.startswith("_") and name not in ("annotations", "re", "pa", "Path", "Sequence")
)
