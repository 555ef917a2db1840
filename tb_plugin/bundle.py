"""The frontend's ES modules as one module, built when the plugin loads (no build step).

TensorBoard loads the tab's entry module into the tab's frame; with one file per module the browser
fetches ``index.js``, then its 17 imports over at most 6 connections (HTTP/1.1): three or four round
trips before the tab can start. :func:`bundle` joins the modules into one file that the plugin serves as
``/bundle.js``, next to ``index.js``, so that ``import.meta.url`` (the routes' prefix) is the same.
The sources stay as they are and are still served one by one (``index.html`` uses them, for development).

Each module becomes a function whose body is the module's text: its ``import`` statements become
constants read from the modules run before it, and its ``export`` keywords are dropped, the exported
names returned. The modules run in dependency order, each once, as the browser would run them; the
bundle exports what ``index.js`` exports. Only the forms the frontend uses are understood (named and
default imports of relative paths, side-effect imports, ``export`` before a declaration, ``export
default``); anything else raises :class:`BundleError` when the plugin loads, naming the module and line.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

__all__ = ["ENTRY", "BundleError", "bundle", "bundled_modules"]

ENTRY = "index.js"
"""The module whose exports the bundle exports (TensorBoard calls its ``render``)."""

_IMPORT = re.compile(r'^import\s+(?:(?P<default>\w+)|\{(?P<names>[^}]*)\})\s+from\s+"(?P<path>[^"]+)";[ \t]*$', re.M)
_BARE_IMPORT = re.compile(r'^import\s+"(?P<path>[^"]+)";[ \t]*$', re.M)
_EXPORT = re.compile(r"^export\s+(?P<kind>(?:async\s+)?function\*?|class|const|let)\s+(?P<name>\w+)", re.M)
_EXPORT_DEFAULT = re.compile(r"^export\s+default\s+", re.M)
_LEFT = re.compile(r"^(?:import|export)\b(?!\.)", re.M)
_DEFAULT = "__lrp_default"
_TABLE = "__lrp_modules"


class BundleError(ValueError):
    """A module uses an import or export form that :func:`bundle` does not understand, or imports in a cycle."""


def _resolve(module: str, path: str) -> str:
    if not path.startswith("./") and not path.startswith("../"):
        raise BundleError(f"bundle: {module} imports {path!r}; only relative paths (./, ../) can be bundled")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(module), path))
    if resolved.startswith("../"):
        raise BundleError(f"bundle: {module} imports {path!r}, outside the frontend's folder")
    return resolved


def _bindings(names: str) -> str:
    """``a, b as c`` -> ``a, b: c`` (a destructuring pattern)."""
    parts = []
    for item in (part.strip() for part in names.split(",")):
        if not item:
            continue
        words = item.split()
        if len(words) == 3 and words[1] == "as":
            parts.append(f"{words[0]}: {words[2]}")
        elif len(words) == 1:
            parts.append(words[0])
        else:
            raise BundleError(f"bundle: cannot read the import binding {item!r}")
    return ", ".join(parts)


def _rewrite(module: str, text: str) -> tuple[str, list[str]]:
    """The module's text as a function body, and the modules it imports (in order)."""
    imports: list[str] = []

    def named(match: re.Match[str]) -> str:
        target = _resolve(module, match["path"])
        imports.append(target)
        source = f"{_TABLE}[{json.dumps(target)}]"
        if match["default"]:
            return f"const {match['default']} = {source}.default;"
        return f"const {{ {_bindings(match['names'])} }} = {source};"

    def bare(match: re.Match[str]) -> str:
        imports.append(_resolve(module, match["path"]))
        return ""

    text = _IMPORT.sub(named, text)
    text = _BARE_IMPORT.sub(bare, text)
    exported = [match["name"] for match in _EXPORT.finditer(text)]
    text = _EXPORT.sub(lambda match: f"{match['kind']} {match['name']}", text)
    has_default = bool(_EXPORT_DEFAULT.search(text))
    text = _EXPORT_DEFAULT.sub(f"const {_DEFAULT} = ", text)
    left = _LEFT.search(text)
    if left:
        line = text.count("\n", 0, left.start()) + 1
        raise BundleError(f"bundle: {module} line {line} has an import or export form the bundle cannot rewrite")
    names = [*exported, *([f"default: {_DEFAULT}"] if has_default else [])]
    return f"{text.rstrip()}\nreturn {{ {', '.join(names)} }};", imports


def bundled_modules(static_dir: Path, entry: str = ENTRY) -> list[str]:
    """The modules the bundle holds, in the order they run: ``entry`` and everything it imports."""
    return [name for name, _ in _ordered(static_dir, entry)]


def _ordered(static_dir: Path, entry: str) -> list[tuple[str, str]]:
    done: dict[str, str] = {}
    visiting: list[str] = []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            raise BundleError(f"bundle: the imports form a cycle: {' -> '.join([*visiting, module])}")
        path = static_dir / module
        if not path.is_file():
            raise BundleError(f"bundle: {visiting[-1] if visiting else 'the entry'} imports {module}, which is missing")
        visiting.append(module)
        body, imports = _rewrite(module, path.read_text(encoding="utf-8"))
        for target in imports:
            visit(target)
        visiting.pop()
        done[module] = body

    visit(entry)
    return list(done.items())


def bundle(static_dir: Path, entry: str = ENTRY) -> str:
    """One ES module with ``entry`` and every module it imports (see the module docstring).

    Raises
    ------
    BundleError
        A module imports in a cycle, imports a missing or non-relative path, or uses an import or export
        form that cannot be rewritten.
    """
    parts = [
        f"// The LRP tab's modules in one file, built from static/ when the plugin loaded (tb_plugin/bundle.py).\n"
        f"const {_TABLE} = Object.create(null);\n"
    ]
    for name, body in _ordered(static_dir, entry):
        parts.append(f"// ---- {name}\n{_TABLE}[{json.dumps(name)}] = (() => {{\n{body}\n}})();\n")
    exported = _EXPORT.findall((static_dir / entry).read_text(encoding="utf-8"))
    names = ", ".join(name for _, name in exported)
    parts.append(f"export const {{ {names} }} = {_TABLE}[{json.dumps(entry)}];\n")
    return "".join(parts)
