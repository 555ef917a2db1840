"""Command line interface: ``lrp-analyze``, the offline SpRAy analysis of every run below a folder.

It prints the *findings* of each run (one line per artifact or strategy, merged over clusterings,
categories and epochs; see :mod:`lrp_lightning.analysis.findings`), a one-line count per kind of note,
and a summary table. ``--verbose`` adds the flags of every clustering and every note. In a run of
several attribution methods, and for a named analysis (``--name``), every line says which method and
analysis it belongs to (``run [method gradient, analysis coarse]: ...``), and a method and analysis
without findings says so.

Exit status: 0 when every item was analysed (or already current), 1 when some item failed (each is
named on stderr), 2 for bad arguments (unknown option, unreadable config, no runs found, an
``--epochs`` or ``--classes`` selection that matches nothing).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main"]


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


def _int_list(text: str) -> list[int]:
    """Parse ``"0,2,5-7"`` into ``[0, 2, 5, 6, 7]``."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else (part, "")
                values.extend(range(int(low), int(high) + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers; write e.g. 0,2,5-7") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must name non-negative integers, e.g. 0,2,5-7")
    return sorted(set(values))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _method_list(text: str) -> list[str] | str:
    if text.strip() == "all":
        return "all"
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name methods, e.g. gradient,epsilon_plus_flat or all, got {text!r}")
    return names


def _analysis_name(text: str) -> str:
    from lrp_lightning.store import check_name

    try:
        return check_name(text, "analysis")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _methods_of(store: Any, wanted: list[str] | str | None) -> list[str]:
    """The run's methods that ``--method`` names (default: the first); unknown names are a ValueError."""
    methods = store.methods
    if wanted is None:
        return methods[:1]
    if wanted == "all":
        return methods
    unknown = [name for name in wanted if name not in methods]
    if unknown:
        raise ValueError(f"--method {','.join(unknown)}: not a method of this run; its methods are {methods}")
    return list(wanted)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrp-analyze``."""
    parser = _Parser(
        prog="lrp-analyze",
        description=(
            "Spectral relevance analysis (SpRAy) of lrp-lightning runs: finds every run below PATH and "
            "analyses each complete epoch whose analysis is missing or stale; writes the analysis tables "
            "next to the epoch and the indicator scalars into the run's TensorBoard events."
        ),
        epilog="Exit status: 0 all analysed, 1 some item failed (named on stderr), 2 bad arguments.",
    )
    parser.add_argument("path", type=Path, help="a run directory or a folder holding runs (e.g. runs/)")
    parser.add_argument("--epochs", type=_int_list, help="only these epochs, e.g. 0,5-9 (default: all)")
    parser.add_argument("--classes", type=_int_list, help="only these classes, e.g. 3,7 (default: all)")
    parser.add_argument("--force", action="store_true", help="recompute even current analyses")
    parser.add_argument("--config", type=Path, help="analysis config, JSON (.json) or TOML (.toml)")
    parser.add_argument(
        "--embeddings",
        choices=("flagged", "all"),
        help="which categories get t-SNE and UMAP layouts: 'flagged' (all samples and the classes with a flagged "
        "cluster; the others get PCA) or 'all' (slower); default: the config's embeddings.scope, else 'flagged'",
    )
    parser.add_argument(
        "--method",
        type=_method_list,
        help="attribution method(s) to analyse, e.g. gradient or epsilon_plus_flat,gradient, or 'all' "
        "(default: the run's first method)",
    )
    parser.add_argument(
        "--name",
        type=_analysis_name,
        help="name of the analysis, e.g. coarse: written next to the default analysis, not over it "
        "(default: the default analysis)",
    )
    parser.add_argument("--jobs", type=_positive, default=1, help="runs analysed in parallel (default: 1)")
    parser.add_argument("--no-scalars", action="store_true", help="do not write TensorBoard scalars")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--verbose", action="store_true", help="also print every clustering's flagged clusters and every note"
    )
    return parser


@dataclass
class _RunReport:
    """What ``lrp-analyze`` found in one run; every entry carries the label of its (method, analysis)."""

    run: str
    analysed: int = 0
    current: int = 0
    # label, epoch, category, region, reason
    flags: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    # label -> finding id -> (summary, reason) at the latest epoch; a label analysed without findings maps to {}
    findings: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # label, note
    messages: list[tuple[str, str]] = field(default_factory=list)  # label, note
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def finding_count(self) -> int:
        return sum(len(found) for found in self.findings.values())


def _block_label(method: str, several_methods: bool, analysis: str | None) -> str:
    """``" [method gradient, analysis coarse]"``: the parts that tell a run's blocks of findings apart."""
    parts = ([f"method {method}"] if several_methods else []) + ([f"analysis {analysis}"] if analysis else [])
    return f" [{', '.join(parts)}]" if parts else ""


def _analyze_one(run: str, settings: dict[str, Any], queue: Any = None) -> _RunReport:
    """Analyse one run (in this process or a worker); never raises for bad input."""
    from lrp_lightning.analysis import analyze_run
    from lrp_lightning.analysis.config import load_config
    from lrp_lightning.analysis.spray import SpRAy
    from lrp_lightning.store import RunStore, StoreError

    report = _RunReport(run)
    if settings.get("threads"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(settings["threads"])
    try:
        if settings["config"] is not None:
            spray, options = load_config(settings["config"])
        else:
            spray, options = SpRAy(), {}
        if settings.get("embeddings"):
            spray = spray.set_params(embeddings=spray.embeddings.set_params(scope=settings["embeddings"]))
        store = RunStore(run)
        old_format = store.format_version
        if store.migrate():  # a store of an older layout (format 1.x: epoch=NNNNNN folders), in place
            report.messages.append(("", f"migrated the store from format {old_format} to {store.format_version}"))
        methods = _methods_of(store, settings.get("methods"))
        several_methods = len(store.methods) > 1
    except (StoreError, OSError, ValueError) as exc:
        report.failures.append((run, str(exc)))
        if queue is not None:
            queue.put(("run-failed", run, 0))
        return report

    label = ""

    def on_epoch(outcome: Any, error: str | None) -> None:
        if outcome is not None:
            if outcome.computed:
                report.analysed += 1
            else:
                report.current += 1
            for category, region, reason in outcome.flags:
                report.flags.append((label, outcome.epoch, category, region, reason))
            found = report.findings.setdefault(label, {})
            for finding in outcome.findings:
                found[finding.finding_id] = (finding.summary(), finding.reason)
            for category, reason in outcome.skipped.items():
                report.skipped.append((label, f"epoch {outcome.epoch}, {category}: {reason}"))
            report.messages.extend((label, message) for message in outcome.messages)
        if queue is not None:
            queue.put(("epoch", run, 1))

    for method in methods:
        label = _block_label(method, several_methods, settings.get("name"))
        try:
            outcome = analyze_run(
                store,
                spray,
                epochs=settings["epochs"],
                classes=settings["classes"],
                force=settings["force"],
                log_scalars=settings["scalars"],
                on_epoch=on_epoch,
                method=method,
                name=settings.get("name"),
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - one run's unexpected error must not stop the others
            report.failures.append((f"{run}{label or f' [method {method}]'}", f"{type(exc).__name__}: {exc}"))
            continue
        report.failures.extend((f"{item}{label}", message) for item, message in outcome.failures)
    return report


def _count_epochs(run: Path, epochs: Sequence[int] | None, methods: list[str] | str | None = None) -> int:
    from lrp_lightning.store import RunStore, StoreError

    try:
        store = RunStore(run)
        found = [info.epoch for info in store.epochs()]
        count = len(_methods_of(store, methods))
    except (StoreError, OSError, ValueError):
        return 0
    return count * (len(found) if epochs is None else len(set(found) & set(epochs)))


def _run_name(run: str, root: Path) -> str:
    """A run's name below ``root``; the run given itself is named by its folder (``digits/version_0``)."""
    path = Path(run)
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        return run
    if name in ("", "."):
        name = path.resolve().name
        if re.fullmatch(r"version_\d+", name) and path.resolve().parent.name:
            name = f"{path.resolve().parent.name}/{name}"
    return name


_NOTE_PREFIX = re.compile(r"^(epoch \d+: )?((class \d+( \([^)]*\))?|all samples): )?")


def _note_kind(message: str) -> str:
    """What a note says, without its epoch, category and numbers: notes of one kind are counted together."""
    text = _NOTE_PREFIX.sub("", message)
    text = re.sub(r"\[[^\]]*\]", "[...]", text)
    text = re.sub(r"kmeans_\d+(, kmeans_\d+)*", "kmeans_k", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _print_notes(reports: list[_RunReport], root: Path, verbose: bool) -> None:
    if verbose:
        for report in reports:
            for label, message in report.messages + report.skipped:
                print(f"lrp-analyze: note: {_run_name(report.run, root)}{label}: {message}", file=sys.stderr)
        return
    kinds: dict[str, list[str]] = {}
    for report in reports:
        for label, message in report.messages + report.skipped:
            kinds.setdefault(_note_kind(message), []).append(f"{_run_name(report.run, root)}{label}: {message}")
    for examples in kinds.values():
        if len(examples) == 1:
            print(f"lrp-analyze: note: {examples[0]}", file=sys.stderr)
        else:
            print(f"lrp-analyze: note ({len(examples)} like it; --verbose lists them): {examples[0]}", file=sys.stderr)


def _selection_error(runs: list[Path], epochs: Sequence[int] | None, classes: Sequence[int] | None) -> str | None:
    """Why an ``--epochs``/``--classes`` selection matches nothing in any run (naming what exists), or None."""
    from lrp_lightning.store import RunStore, StoreError

    found_epochs: set[int] = set()
    found_classes: set[int] = set()
    for run in runs:
        try:
            store = RunStore(run)
            found_epochs.update(info.epoch for info in store.epochs())
            if classes is not None:
                names = store.manifest.get("class_names") or []
                found_classes.update(range(len(names)))
                try:
                    found_classes.update(int(v) for v in store.probe_table(["label"]).column(0).to_pylist())
                except (StoreError, OSError):
                    pass
        except (StoreError, OSError, ValueError):
            continue  # an unreadable run fails later, with its own message

    def spans(values: set[int]) -> str:
        ordered, parts = sorted(values), []
        start = prev = None
        for v in ordered + [None]:
            if start is not None and (v is None or v != prev + 1):
                parts.append(str(start) if start == prev else f"{start}-{prev}")
                start = None
            if v is not None and start is None:
                start = v
            prev = v
        return ",".join(parts) or "none"

    if epochs is not None and found_epochs and not set(epochs) & found_epochs:
        return f"--epochs {spans(set(epochs))} matches no complete epoch; the runs hold epochs {spans(found_epochs)}"
    if classes is not None and found_classes and not set(classes) & found_classes:
        return f"--classes {spans(set(classes))} matches no class; the runs hold classes {spans(found_classes)}"
    return None


def _summary(reports: list[_RunReport], root: Path) -> str:
    rows = []
    for report in reports:
        name = _run_name(report.run, root)
        rows.append(
            (
                name,
                str(report.analysed),
                str(report.current),
                str(len(report.failures)),
                str(report.finding_count),
            )
        )
    header = ("run", "analysed", "up to date", "failed", "findings")
    rows.append(
        (
            f"total ({len(reports)} run{'' if len(reports) == 1 else 's'})",
            str(sum(r.analysed for r in reports)),
            str(sum(r.current for r in reports)),
            str(sum(len(r.failures) for r in reports)),
            str(sum(r.finding_count for r in reports)),
        )
    )
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(header), line(["-" * w for w in widths])]
    lines.extend(line(row) for row in rows[:-1])
    lines.append(line(["-" * w for w in widths]))
    lines.append(line(rows[-1]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lrp-analyze``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        parser.print_usage(sys.stderr)
        print(f"lrp-analyze: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if not args.path.exists():
        print(f"lrp-analyze: error: {args.path} does not exist", file=sys.stderr)
        return 2
    if args.config is not None:
        from lrp_lightning.analysis.config import load_config

        try:
            load_config(args.config)  # bad config is a bad argument: report it before any work
        except ValueError as exc:
            print(f"lrp-analyze: error: {exc}", file=sys.stderr)
            return 2
    from tqdm import tqdm

    from lrp_lightning.store import MANIFEST_FILE, STORE_SUBDIR, find_runs

    runs = find_runs(args.path)
    if not runs:
        print(
            f"lrp-analyze: error: no lrp-lightning runs below {args.path} "
            f"(a run holds {(STORE_SUBDIR / MANIFEST_FILE).as_posix()}; "
            "train with LRPCallback first)",
            file=sys.stderr,
        )
        return 2
    problem = _selection_error(runs, args.epochs, args.classes)
    if problem is not None:
        print(f"lrp-analyze: error: {problem}", file=sys.stderr)
        return 2
    jobs = min(args.jobs, len(runs))
    settings = {
        "config": args.config,
        "epochs": args.epochs,
        "classes": args.classes,
        "force": args.force,
        "embeddings": args.embeddings,
        "methods": args.method,
        "name": args.name,
        "scalars": not args.no_scalars,
        "threads": max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None,
    }
    total = sum(_count_epochs(run, args.epochs, args.method) for run in runs)
    bar = tqdm(total=total, unit="epoch", desc="lrp-analyze", disable=args.quiet, file=sys.stderr)
    reports: list[_RunReport] = []
    if jobs == 1:

        class _Queue:
            def put(self, item: tuple) -> None:
                bar.update(item[2])
                bar.set_postfix_str(os.path.relpath(item[1], args.path))

        for run in runs:
            reports.append(_analyze_one(str(run), settings, _Queue()))
    else:
        import multiprocessing

        with multiprocessing.Manager() as manager:
            queue = manager.Queue()
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_analyze_one, str(run), settings, queue) for run in runs]
                pending = set(range(len(futures)))
                while pending:
                    while not queue.empty():
                        bar.update(queue.get()[2])
                    for i in list(pending):
                        if futures[i].done():
                            pending.discard(i)
                    if pending:
                        _wait(futures, pending)
                while not queue.empty():
                    bar.update(queue.get()[2])
            for run, future in zip(runs, futures):
                try:
                    reports.append(future.result())
                except Exception as exc:  # noqa: BLE001 - a crashed worker fails its run only
                    reports.append(_RunReport(str(run), failures=[(str(run), f"{type(exc).__name__}: {exc}")]))
    bar.close()
    _print_notes(reports, args.path, args.verbose)
    for report in reports:
        name = _run_name(report.run, args.path)
        if args.verbose:
            for label, epoch, category, _region, reason in report.flags:
                print(f"lrp-analyze: flagged cluster: {name}{label} epoch {epoch}, {category}: {reason}")
        for label, found in report.findings.items():
            if not found and label:  # one of several methods or a named analysis: its absence of findings too
                print(f"lrp-analyze: no findings: {name}{label}")
            for summary, reason in found.values():
                print(f"lrp-analyze: finding: {name}{label}: {summary}")
                if args.verbose:
                    print(f"    {reason}")
    print(_summary(reports, args.path))
    failures = [failure for report in reports for failure in report.failures]
    for item, message in failures:
        print(f"lrp-analyze: FAILED {item}: {message}", file=sys.stderr)
    return 1 if failures else 0


def _wait(futures: list, pending: set[int]) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    wait([futures[i] for i in pending], timeout=0.2, return_when=FIRST_COMPLETED)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
