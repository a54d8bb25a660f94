"""The import structure of adalora/, experiments/ and scripts/: no module imports a command-line
script (a file with a ``__main__`` block), and no import circle, counting the imports inside
functions (which would hide a circle from the interpreter)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adalora", "experiments", "scripts")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The project modules that ``path`` imports anywhere in it (``from a import b`` counts as
    a.b when a.b is a module, else as a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(subs or {node.module})
    return found & MODULES.keys()


GRAPH = {m: _imports(p) for m, p in MODULES.items()}
CLIS = {m for m, p in MODULES.items() if '__name__ == "__main__"' in p.read_text()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while comp[-1:] != [v]:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_scan_sees_the_runners_and_their_imports():
    assert {"experiments.glue", "experiments.summarization", "scripts.reproduce"} <= CLIS
    assert "experiments.glue_task" in GRAPH["experiments.glue"]
    assert "experiments.glue_task" in GRAPH["scripts.bench.train_data"]  # a function-level import


def test_no_module_imports_a_command_line_script():
    bad = {m: sorted(GRAPH[m] & CLIS) for m in GRAPH if GRAPH[m] & CLIS}
    assert bad == {}, "move what they import out of the script into a module both can import"


def test_no_import_circle():
    assert _cycles(GRAPH) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
