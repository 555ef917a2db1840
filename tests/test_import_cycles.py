"""No import cycles anywhere in lrp_lightning, its subpackages included (issue 12).

tests/lrp/test_canonizers.py checks the engine's top-level modules (and that the engine knows no model
family); this test walks every module of the package, ``store/`` and ``analysis/`` too, and counts lazy
imports inside functions as well, since a lazy import only hides a cycle.
"""

import ast
from pathlib import Path

import lrp_lightning

PACKAGE = Path(lrp_lightning.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in modules}
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                target = f"{anchor}.{node.module}" if node.module else anchor
            elif node.module in modules:
                target = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
        found.discard(name)
        graph[name] = found
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for other in graph.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_graph_sees_subpackages_and_lazy_imports():
    graph = import_graph()
    # a value that could be wrong: the walker must resolve relative imports inside subpackages
    assert "lrp_lightning._validation" in graph["lrp_lightning.analysis.affinity"]
    assert "lrp_lightning.image" in graph and "lrp_lightning._colormaps" in graph["lrp_lightning.image"]
    assert "lrp_lightning._metric_base" in graph["lrp_lightning.metrics"]


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert [module for module in graph if module in _reachable(graph, module)] == []
