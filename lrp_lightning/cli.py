"""Command line interface: ``lrp-analyze``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lrp-analyze``; the analysis pipeline is not part of this release yet."""
    print(
        "lrp-analyze: the SpRAy analysis is not available in this version of lrp-lightning "
        "(see the README's roadmap).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
