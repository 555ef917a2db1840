"""Colour maps: compiling a colour-map specification or stops into a 256-entry palette.

This module owns every colour map of the project. A :class:`ColorMap` is compiled from a short
colour-map specification (the language of Zennit's ``zennit.cmap``) or from a list of stops, and
turns values in ``[0, 1]`` into colours through a 256-entry ``uint8`` palette. The built-in maps in
:data:`COLOR_MAPS` carry Zennit's names and give Zennit's palettes exactly, so heatmaps look the same
as in papers and notebooks made with Zennit. :func:`register_cmap` adds a named map and
:func:`get_cmap` resolves a name, a specification or stops.

The public names are re-exported by :mod:`lrp_lightning.image`; import them from there.

Colour-map specification language
---------------------------------
Comma-separated colours, each 3 or 6 hex digits (``f00`` or ``ff0000``), each optionally preceded
by a palette index of 1 or 2 hex digits and a colon (``80:fff``; one digit is doubled, ``8`` is
``88``). Colours between the palette indices are interpolated linearly. The first colour without an
index sits at ``00`` and the last at ``ff``; colours without an index between two placed ones are
spread evenly between them; before the first and after the last index the colour is held. Indices
must ascend from left to right. Example: ``"0ff,00f,80:000,f00,ff0,fff"`` (coldnhot) runs from cyan
over blue to black at ``80`` and over red and yellow to white.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import argument_error

if TYPE_CHECKING:
    import torch

    ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]
    ColorLike = tuple[int, int, int] | str

__all__ = [
    "COLOR_MAPS",
    "PALETTE_SIZE",
    "ColorMap",
    "ColorMapSyntaxError",
    "LazyColorMapCache",
    "get_cmap",
    "register_cmap",
]

#: Number of entries in every palette.
PALETTE_SIZE = 256


class ColorMapSyntaxError(ValueError, RuntimeError):
    """A malformed colour-map specification or stop (a RuntimeError too, as Zennit raises for these)."""


_INDEX_TEXT = re.compile(r"[0-9a-fA-F]{1,2}")
_COLOR_TEXT = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")
_NAME_TEXT = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")


def _parse_hex_color(text: str) -> tuple[int, int, int] | None:
    """Return ``(r, g, b)`` for 3 or 6 hex digits (an optional leading ``#``), or None if malformed."""
    text = text.strip().removeprefix("#")
    if not _COLOR_TEXT.fullmatch(text):
        return None
    if len(text) == 3:
        text = "".join(digit * 2 for digit in text)
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def _parse_spec(spec: str) -> list[tuple[int | None, tuple[int, int, int]]]:
    """Split a specification into ``(palette index or None, colour)`` entries, checking the syntax."""
    entries = []
    for number, entry in enumerate(spec.split(","), start=1):
        head, colon, tail = entry.partition(":")
        index_text, color_text = (head.strip(), tail) if colon else (None, head)
        if index_text is None:
            index = None
        elif _INDEX_TEXT.fullmatch(index_text):
            index = int(index_text * 2 if len(index_text) == 1 else index_text, 16)
        else:
            raise ColorMapSyntaxError(
                f"colour map spec {spec!r}: entry {number} ({entry.strip()!r}) has the index "
                f"{index_text!r}; an index is 1 or 2 hex digits from 0 to ff followed by ':', e.g. '80:fff'"
            )
        color = _parse_hex_color(color_text)
        if color is None or color_text.strip().startswith("#"):
            raise ColorMapSyntaxError(
                f"colour map spec {spec!r}: entry {number} ({entry.strip()!r}) has the colour "
                f"{color_text.strip()!r}; a colour is 3 or 6 hex digits, e.g. 'f00' or 'ff0000'"
            )
        entries.append((index, color))
    return entries


def _stops_to_entries(stops: Sequence[Any]) -> list[tuple[int | None, tuple[int, int, int]]]:
    """Turn ``(position in [0, 1], colour)`` stops into entries placed on palette indices."""
    entries = []
    for number, stop in enumerate(stops, start=1):
        try:
            position, color = stop
        except (TypeError, ValueError):
            raise ColorMapSyntaxError(
                f"colour stop {number} ({stop!r}) is not a pair; pass (position, (r, g, b)), "
                "e.g. (0.5, (255, 255, 255))"
            ) from None
        if isinstance(position, bool) or not isinstance(position, (int, float, np.integer, np.floating)):
            raise ColorMapSyntaxError(f"colour stop {number}: position {position!r} is not a number in [0, 1]")
        if not 0.0 <= float(position) <= 1.0:
            raise ColorMapSyntaxError(f"colour stop {number}: position {position!r} is outside [0, 1]")
        entries.append((_position_to_index(float(position)), _stop_color(color, number)))
    return entries


def _position_to_index(position: float) -> int:
    # The 256 palette entries split [0, 1] into equal bins; a stop goes into the bin that a normalised
    # value equal to its position is rendered with, so 0.5 is index 0x80, the centre of diverging maps.
    return min(math.floor(position * PALETTE_SIZE), PALETTE_SIZE - 1)


def _stop_color(color: Any, number: int) -> tuple[int, int, int]:
    if isinstance(color, str):
        parsed = _parse_hex_color(color)
        if parsed is None:
            raise ColorMapSyntaxError(
                f"colour stop {number}: colour {color!r} is not 3 or 6 hex digits, e.g. 'f00' or '#ff0000'"
            )
        return parsed
    try:
        components = tuple(color)
    except TypeError:
        components = ()
    if len(components) != 3:
        raise ColorMapSyntaxError(f"colour stop {number}: colour {color!r} is not (r, g, b) or a hex string")
    for component in components:
        integral = isinstance(component, (int, np.integer)) or (
            isinstance(component, (float, np.floating)) and float(component).is_integer()
        )
        if isinstance(component, bool) or not integral or not 0 <= component <= 255:
            raise ColorMapSyntaxError(
                f"colour stop {number}: colour {color!r} needs integer components from 0 to 255; "
                "for floats in [0, 1], multiply by 255 and round"
            )
    return int(components[0]), int(components[1]), int(components[2])


def _place(entries: list[tuple[int | None, tuple[int, int, int]]], what: str) -> list[tuple[int, np.ndarray]]:
    """Give every entry a palette index and add the held colour at index 0."""
    if len(entries) < 2:
        raise ColorMapSyntaxError(f"{what} has {len(entries)} colour(s); a colour map needs at least 2, e.g. '000,fff'")
    first_index, first_color = entries[0]
    placed = [(0, first_color)]
    if first_index:
        placed.append((first_index, first_color))
    unplaced: list[tuple[int, int, int]] = []
    for number, (index, color) in enumerate(entries[1:], start=2):
        if index is None:
            if number < len(entries):
                unplaced.append(color)
                continue
            index = PALETTE_SIZE - 1
        previous = placed[-1][0]
        if index < previous:
            raise ColorMapSyntaxError(
                f"{what}: entry {number} has index {index:02x}, below the previous index {previous:02x}; "
                "indices must ascend from left to right"
            )
        # Exact integer division: colours without an index are spread evenly, rounded down.
        gaps = len(unplaced) + 1
        placed += [(previous + (index - previous) * k // gaps, c) for k, c in enumerate(unplaced, start=1)]
        unplaced.clear()
        placed.append((index, color))
    return [(index, np.asarray(color, dtype=np.float64)) for index, color in placed]


class ColorMap:
    """A linear colour map with a 256-entry palette.

    Parameters
    ----------
    spec : str or sequence of (float, colour)
        Either a colour-map specification such as ``"00f,80:fff,f00"`` (see the module docstring), or
        stops ``[(position, colour), ...]`` with positions in ``[0, 1]`` in ascending order and
        colours as ``(r, g, b)`` integers from 0 to 255 or hex strings (``"#f00"``). A stop at
        position ``p`` is placed on palette index ``min(floor(256 * p), 255)``, so ``0.5`` is index
        ``0x80``, the palette entry that zero relevance is drawn with.
    name : str, optional
        Name shown in ``repr`` (default None); the registry sets it.

    Raises
    ------
    ValueError
        If the specification or a stop is malformed, fewer than 2 colours are given, or indices are
        not ascending; the message names the entry.

    Examples
    --------
    >>> cmap = ColorMap("0:000,80:f00,ff:fff")
    >>> cmap.palette()[64].tolist()  # halfway from black to red, rounded down
    [127, 0, 0]
    >>> ColorMap([(0.0, (0, 0, 0)), (0.5, "#f00"), (1.0, (255, 255, 255))]).spec
    '00:000000,80:ff0000,ff:ffffff'
    """

    def __init__(self, spec: str | Sequence[tuple[float, ColorLike]], name: str | None = None) -> None:
        self.name = name
        self._compile(spec)

    def _compile(self, spec: str | Sequence[tuple[float, ColorLike]]) -> None:
        if isinstance(spec, str):
            placed = _place(_parse_spec(spec), f"colour map spec {spec!r}")
            self._spec = spec
        elif isinstance(spec, Sequence):
            placed = _place(_stops_to_entries(spec), "colour stops")
            self._spec = ",".join(f"{index:02x}:" + "".join(f"{int(c):02x}" for c in color) for index, color in placed)
        else:
            raise argument_error(
                "ColorMap", "spec", "a spec string like '00f,80:fff,f00' or a list of (position, colour) stops", spec
            )
        # A held copy of the last colour past the end lets every value in [0, 255] find a right neighbour.
        self._indices = np.array([index for index, _ in placed] + [PALETTE_SIZE], dtype=np.float64)
        self._colors = np.stack([color for _, color in placed] + [placed[-1][1]])
        self._palettes: dict[float, np.ndarray] = {}

    @property
    def spec(self) -> str:
        """The specification string this map was made from (a generated one for stops)."""
        return self._spec

    @property
    def source(self) -> str:
        """The specification, as Zennit's ``ColorMap.source``; assigning a new one recompiles the map."""
        return self._spec

    @source.setter
    def source(self, value: str | Sequence[tuple[float, ColorLike]]) -> None:
        self._compile(value)

    @property
    def stops(self) -> tuple[tuple[int, tuple[int, int, int]], ...]:
        """Every colour with its palette index (0 to 255), after placing unindexed colours."""
        return tuple(
            (int(index), (int(color[0]), int(color[1]), int(color[2])))
            for index, color in zip(self._indices[:-1], self._colors[:-1])
        )

    def __repr__(self) -> str:
        name = f"name={self.name!r}, " if self.name else ""
        return f"ColorMap({name}spec={self._spec!r})"

    def _interpolate(self, position: np.ndarray) -> np.ndarray:
        """Colours in ``[0, 255]`` for positions measured in palette indices, ``0 <= position <= 255``."""
        right = np.searchsorted(self._indices, position, side="right")
        left = right - 1
        start, end = self._indices[left], self._indices[right]
        fraction = ((position - start) / (end - start))[..., None]
        return self._colors[left] + (self._colors[right] - self._colors[left]) * fraction

    def __call__(self, values: ArrayLike) -> np.ndarray:
        """Map values in ``[0, 1]`` (clipped) to RGB floats in ``[0, 1]``, appending an axis of size 3.

        Parameters
        ----------
        values : array-like
            Values of any shape; they are clipped to ``[0, 1]``.

        Returns
        -------
        numpy.ndarray
            Float64 colours of shape ``values.shape + (3,)``, interpolated without a palette.
        """
        array = np.asarray(values, dtype=np.float64)
        if np.isnan(array).any():
            raise ValueError("ColorMap got NaN values; replace them (e.g. numpy.nan_to_num) before mapping")
        return self._interpolate(np.clip(array * (PALETTE_SIZE - 1), 0.0, PALETTE_SIZE - 1)) / 255.0

    def palette(self, level: float = 1.0) -> np.ndarray:
        """The 256 colours that indices 0 to 255 are drawn with.

        Parameters
        ----------
        level : float, optional
            Contrast, as Zennit's ``level`` (default 1.0). Entry ``k`` shows the map at
            ``0.5 + level * (k / 255 - 0.5)``, clipped to ``[0, 1]``: below 1 fewer colours are used
            (only the centre colour at 0), above 1 values saturate sooner. Negative values reverse
            the map.

        Returns
        -------
        numpy.ndarray
            Read-only ``uint8`` array of shape ``(256, 3)``.
        """
        level = float(level)
        if not math.isfinite(level):
            raise argument_error("ColorMap.palette", "level", "a finite number", level)
        cached = self._palettes.get(level)
        if cached is None:
            half = (PALETTE_SIZE - 1) / 2.0
            position = np.clip(half + (np.arange(PALETTE_SIZE) - half) * level, 0.0, PALETTE_SIZE - 1)
            # Channels are rounded down as Zennit does (so palettes match it exactly); rounding to 12
            # decimals first keeps float noise such as 127.99999999999997 from dropping a whole step.
            colors = np.clip(np.round(self._interpolate(position), 12), 0.0, 255.0)
            cached = colors.astype(np.uint8)
            cached.setflags(write=False)
            self._palettes[level] = cached
        return cached


class LazyColorMapCache(MutableMapping):
    """Named colour-map specifications, compiled into :class:`ColorMap` objects on first access.

    Assigning a new specification to a compiled name recompiles that same ColorMap object (so
    references to it see the change), as Zennit's ``LazyColorMapCache`` does.

    Parameters
    ----------
    sources : mapping of str to str
        Names and their specifications.
    """

    def __init__(self, sources: dict[str, str]) -> None:
        self._sources = dict(sources)
        self._compiled: dict[str, ColorMap] = {}

    def __getitem__(self, name: str) -> ColorMap:
        if name not in self._sources:
            raise KeyError(name)
        if name not in self._compiled:
            self._compiled[name] = ColorMap(self._sources[name], name=name)
        return self._compiled[name]

    def __setitem__(self, name: str, value: str) -> None:
        self._sources[name] = value
        if name in self._compiled:
            self._compiled[name].source = value

    def __delitem__(self, name: str) -> None:
        del self._sources[name]
        self._compiled.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


_BUILTIN_SPECS = {
    # Same names and colours as Zennit 0.5.1, so heatmaps look as in Zennit-made figures.
    "gray": "000,fff",
    "wred": "fff,f00",
    "wblue": "fff,00f",
    "hot": "000,f00,ff0,fff",
    "cold": "000,00f,0ff",
    "coldnhot": "0ff,00f,80:000,f00,ff0,fff",
    "bwr": "00f,80:fff,f00",
    "france": "0055a4,80:fff,ef4135",
    "seismic": "0000d0,80:d0d0d0,d00000",
    "coolio": "00d0d0,80:d0d0d0,d000d0",
    "coleus": "00d000,80:d0d0d0,d000d0",
}

if TYPE_CHECKING:
    CmapLike = str | ColorMap | Sequence[tuple[float, ColorLike]]

#: Registry of named colour maps; add to it with :func:`register_cmap`.
COLOR_MAPS: dict[str, ColorMap] = {name: ColorMap(spec, name=name) for name, spec in _BUILTIN_SPECS.items()}


def register_cmap(
    name: str, spec: str | Sequence[tuple[float, ColorLike]] | ColorMap, *, overwrite: bool = False
) -> ColorMap:
    """Add a named colour map to :data:`COLOR_MAPS`.

    Parameters
    ----------
    name : str
        Name to look the map up by: a letter or ``_`` followed by letters, digits, ``_ . + -``.
    spec : str, sequence of (float, colour) or ColorMap
        Anything :class:`ColorMap` accepts, or a ColorMap (its spec is used).
    overwrite : bool, optional
        Replace a map already registered under ``name`` (default False).

    Returns
    -------
    ColorMap
        The registered map.

    Raises
    ------
    ValueError
        If the name is malformed or taken (and ``overwrite`` is False), or the spec is malformed.
    """
    if not isinstance(name, str) or not _NAME_TEXT.fullmatch(name):
        expected = "a letter or '_' followed by letters, digits, '_', '.', '+' or '-'"
        raise argument_error("register_cmap", "name", expected, name, "e.g. 'my_bwr'")
    if name in COLOR_MAPS and not overwrite:
        note = f"{name!r} is {COLOR_MAPS[name].spec!r}; pass overwrite=True to replace it"
        raise argument_error("register_cmap", "name", "a name not registered yet", name, note)
    cmap = ColorMap(spec.spec if isinstance(spec, ColorMap) else spec, name=name)
    COLOR_MAPS[name] = cmap
    return cmap


def get_cmap(cmap: CmapLike) -> ColorMap:
    """Resolve a registered name, a specification, stops or a ColorMap to a :class:`ColorMap`.

    Parameters
    ----------
    cmap : str, ColorMap or sequence of (float, colour)
        A name from :data:`COLOR_MAPS` (e.g. ``"coldnhot"``), a specification such as
        ``"00f,80:fff,f00"``, stops as :class:`ColorMap` takes them, or a ColorMap (returned as is).

    Returns
    -------
    ColorMap

    Raises
    ------
    ValueError
        If a string is neither a registered name nor a valid specification; the message lists the
        registered names.
    """
    if isinstance(cmap, ColorMap):
        return cmap
    if isinstance(cmap, str):
        if cmap in COLOR_MAPS:
            return COLOR_MAPS[cmap]
        if "," not in cmap:
            raise argument_error(
                "get_cmap",
                "cmap",
                f"a registered colour map ({', '.join(sorted(COLOR_MAPS))}) or a spec like '00f,80:fff,f00'",
                cmap,
                "add a name with register_cmap(name, spec)",
            )
    return ColorMap(cmap)
