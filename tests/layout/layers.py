"""The kit's import layers, read from the source with `ast` (no module is imported).

    servers  <-  helpers core  <-  helpers/<lesson>  <-  bench

- `servers.*` is the bottom layer; `helpers.<module>` (a file directly in helpers/, and
  `helpers` itself) is the core; `helpers.<package>.*` (a folder in helpers/) is one lesson's
  engine; `bench.*` is the top.
- A module may import its own layer or a lower one, except that a lesson may not import
  another lesson.
- No module reaches another module's private (`_name`) names, by `from m import _name` or by
  `m._name`.
- No cycles, counting imports made inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("servers", "helpers", "bench")
ORDER = "servers <- helpers core <- helpers/<lesson> <- bench"


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a kit module)
    path: Path
    line: int


@dataclass(frozen=True)
class Layer:
    rank: int  # 0 servers, 1 helpers core, 2 a lesson, 3 bench
    lesson: str | None = None

    def __str__(self) -> str:
        return ["servers", "helpers core", f"helpers/{self.lesson}", "bench"][self.rank]


def module_names(root: Path) -> dict[str, Path]:
    """Every kit module below `root`, by dotted name (`helpers/compare/__init__.py` is
    `helpers.compare`)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def layer_of(module: str, modules: dict[str, Path]) -> Layer:
    parts = module.split(".")
    if parts[0] == "servers":
        return Layer(0)
    if parts[0] == "bench":
        return Layer(3)
    if len(parts) == 1 or modules[".".join(parts[:2])].name != "__init__.py":
        return Layer(1)  # `helpers`, or a file directly in helpers/
    return Layer(2, parts[1])


def allowed(source: Layer, target: Layer) -> bool:
    if target.rank != source.rank:
        return target.rank < source.rank
    return source.rank != 2 or source.lesson == target.lesson


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _kit(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _private(name: str) -> bool:
    """`_name`, but not a dunder, nor a protocol name such as IPython's `_repr_mimebundle_`."""
    return name.startswith("_") and not name.endswith("_")


def _defined_here(tree: ast.AST) -> set[str]:
    """Names this module defines itself: functions, classes, and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def scan(root: Path) -> tuple[list[Edge], list[str]]:
    """All imports between kit modules, and every private name reached across modules."""
    modules = module_names(root)
    edges: list[Edge] = []
    private: list[str] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> kit module it is bound to
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _kit(alias.name):
                        edges.append(Edge(module, alias.name, path, node.lineno))
                        if alias.asname:
                            aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, node, is_package)
                if not _kit(base):
                    continue
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    if child in modules:  # `from helpers import metrics`: a module
                        edges.append(Edge(module, child, path, node.lineno))
                        aliases[alias.asname or alias.name] = child
                    else:
                        edges.append(Edge(module, base, path, node.lineno))
                        if _private(alias.name) and base != module:
                            private.append(f"{where} imports {alias.name} from {base}")
        own = _defined_here(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                private.append(f"{where} reads {aliases[node.value.id]}.{node.attr}")
            elif node.attr not in own and not (isinstance(node.value, ast.Name)
                                               and node.value.id in ("self", "cls")):
                # `server._start()` where this module defines no `_start`: another
                # module's private attribute, reached through one of its objects.
                private.append(f"{where} reads .{node.attr}, which this module does not define")
    unique = {(e.source, e.target, e.line): e for e in edges
              if e.target in modules and e.target != e.source}
    return list(unique.values()), private


def wrong_way(root: Path) -> list[str]:
    """Every import against the layer order, as 'file:line: a (layer) imports b (layer)'."""
    modules = module_names(root)
    found = []
    for edge in scan(root)[0]:
        source, target = layer_of(edge.source, modules), layer_of(edge.target, modules)
        if not allowed(source, target):
            found.append(f"{edge.path.relative_to(root)}:{edge.line}: {edge.source} ({source}) "
                         f"imports {edge.target} ({target})")
    return found


def cycles(root: Path) -> list[list[str]]:
    """The import cycles among kit modules: each a list of modules, in order."""
    graph: dict[str, set[str]] = {}
    for edge in scan(root)[0]:
        graph.setdefault(edge.source, set()).add(edge.target)
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> Iterator[list[str]]:
        if node in stack:
            yield stack[stack.index(node):] + [node]
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            yield from visit(nxt, stack)
        stack.pop()
        done.add(node)

    for start in sorted(graph):
        for cycle in visit(start, []):
            if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in found]:
                found.append(cycle)
    return found
