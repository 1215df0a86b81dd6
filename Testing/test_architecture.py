"""The shape of the code, read with `ast` (every import counts, also those inside functions):
no import cycle inside COMPASSLib, and the doors (the Slicer module, the batch script, the command line)
call the library, never each other."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "COMPASSLib"
# the doors: who a user runs; none of them may import another
DOORS = {"COMPASSLib.batch": "the batch script", "COMPASSLib.cli": "the command line",
         "COMPASSLib.commands": "the command line's sub-commands", "COMPASS": "the Slicer module"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def library_modules() -> dict:
    return {module_name(p): p for p in LIBRARY.rglob("*.py")}


def imports_of(path: Path, known: dict) -> set:
    """COMPASSLib modules `path` imports anywhere in its body (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(stem + ([base] if base else []))
            for a in node.names:   # `from pkg import module` names a module, `from module import x` a name
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict:
    known = library_modules()
    return {m: imports_of(p, known) for m, p in known.items()}


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_compasslib():
    found = cycles(import_graph())
    assert not found, "import cycles (move the shared piece down a layer): " + "; ".join(" <-> ".join(c) for c in found)


# docs/ARCHITECTURE.md "Layers": a module imports only modules of its own layer or below
LAYERS = [
    ["COMPASSLib", "COMPASSLib.errors", "COMPASSLib.progress", "COMPASSLib.atomic", "COMPASSLib.provenance",
     "COMPASSLib.resources", "COMPASSLib.allocator", "COMPASSLib.devices", "COMPASSLib.memory",
     "COMPASSLib.executors"],
    ["COMPASSLib.cohort", "COMPASSLib.geometry", "COMPASSLib.io", "COMPASSLib.ingest", "COMPASSLib.scan"],
    ["COMPASSLib.dose", "COMPASSLib.dvh_agreement", "COMPASSLib.ntcp", "COMPASSLib.synth"],
    ["COMPASSLib.features"], ["COMPASSLib.twin"], ["COMPASSLib.mrml"],
    ["COMPASSLib.pipeline", "COMPASSLib.report", "COMPASSLib.background", "COMPASSLib.webview"],
    ["COMPASSLib.batch", "COMPASSLib.cli", "COMPASSLib.commands", "COMPASSLib.__main__"],
]


def layer_of(module: str) -> int:
    """Index of the layer whose longest prefix names `module`."""
    matches = [(len(p), i) for i, layer in enumerate(LAYERS) for p in layer if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is in no layer of docs/ARCHITECTURE.md: add it to LAYERS and the doc"
    return max(matches)[1]


def test_imports_go_down_the_layers():
    upward = [f"{m} (layer {layer_of(m) + 1}) imports {i} (layer {layer_of(i) + 1})"
              for m, deps in import_graph().items() for i in deps if layer_of(i) > layer_of(m)]
    assert not upward, upward


def _door_of(module: str):
    return next((d for d in DOORS if module == d or module.startswith(d + ".")), None)


def test_doors_call_the_library_not_each_other():
    known = library_modules()
    sources = {m: p for m, p in known.items()} | {"COMPASS": ROOT / "COMPASS" / "COMPASS.py"}
    crossings = []
    for module, path in sources.items():
        door = _door_of(module)
        if door is None:
            continue
        for imported in imports_of(path, known):
            other = _door_of(imported)
            if other is not None and other != door and not (door == "COMPASSLib.cli" and other == "COMPASSLib.commands"):
                crossings.append(f"{module} ({DOORS[door]}) imports {imported} ({DOORS[other]})")
    assert not crossings, crossings


def test_library_has_no_door_inside():
    """The library below the doors never imports a door (that would make the doors' order matter)."""
    known = library_modules()
    wrong = [f"{m} imports {i}" for m, p in known.items() if _door_of(m) is None
             for i in imports_of(p, known) if _door_of(i) is not None and m != "COMPASSLib.__main__"]
    assert not wrong, wrong
