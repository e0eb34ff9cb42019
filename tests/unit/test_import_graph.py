"""The package graph is one-way: the kernel (``shopfloor`` without ``shopfloor.app``) imports no subsystem,
no subsystem imports the application layer, subsystems import only what they may, and no file cycles.

Built with grimp (import-linter's graph engine) from the source, imports inside functions included.
Run with ``-s`` to print the package-level graph.
"""

from __future__ import annotations

import grimp
import pytest

APP = "shopfloor.app"
SUBSYSTEMS = ("connectors", "historian", "plant_simulator", "mes", "analytics", "dashboard", "uns")
# Which subsystems a subsystem may import besides the kernel: readers of history go through the
# historian's interfaces, the dashboard also shows the MES; the MQTT source reads Sparkplug B with the
# unified namespace's decoder (uns.sparkplug needs only the kernel). Everything else meets in the app layer.
MAY_IMPORT: dict[str, set[str]] = {
    "connectors": {"uns"},
    "historian": set(),
    "plant_simulator": set(),
    "mes": {"historian"},
    "analytics": {"historian", "mes"},
    "dashboard": {"historian", "mes", "analytics"},
    "uns": {"historian"},
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("shopfloor", *SUBSYSTEMS, cache_dir=None)


def layer(module: str) -> str:
    """'kernel', 'app' or the subsystem a module belongs to."""
    if module == APP or module.startswith(APP + "."):
        return "app"
    top = module.split(".", 1)[0]
    return "kernel" if top == "shopfloor" else top


def edges(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    return [
        (m, imported)
        for m in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(m)
    ]


def violations(graph: grimp.ImportGraph) -> list[str]:
    out = []
    for importer, imported in edges(graph):
        src, dst = layer(importer), layer(imported)
        if src == dst or src == "app" or dst == "kernel":
            continue
        if src == "kernel":
            out.append(f"kernel module {importer} imports {imported} ({dst})")
        elif dst == "app":
            out.append(f"{src} module {importer} imports the application layer ({imported})")
        elif dst not in MAY_IMPORT[src]:
            out.append(f"{src} module {importer} imports {imported}: {src} may import only the kernel"
                       + "".join(f", {d}" for d in sorted(MAY_IMPORT[src])))  # fmt: skip
    return out


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    succ = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(succ):
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_kernel_is_at_the_ground_and_nothing_imports_the_app_layer(graph: grimp.ImportGraph) -> None:
    packages: dict[str, set[str]] = {}
    for importer, imported in edges(graph):
        src, dst = layer(importer), layer(imported)
        if src != dst:
            packages.setdefault(src, set()).add(dst)
    print("\npackage graph (importer -> imported):")
    for src in sorted(packages, key=lambda p: (p != "app", p)):
        print(f"  {src:<16} -> {', '.join(sorted(packages[src]))}")
    assert "kernel" not in packages, "the kernel imports upward"
    assert violations(graph) == []


def test_no_module_cycles(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(graph: grimp.ImportGraph) -> None:
    """The rules can fail: add the imports a careless change would, on a copy of the graph."""
    g = (
        graph.copy()
        if hasattr(graph, "copy")
        else grimp.build_graph("shopfloor", *SUBSYSTEMS, cache_dir=None)
    )
    g.add_import(importer="shopfloor.model", imported="historian.writer")
    g.add_import(importer="connectors.modbus.connector", imported="shopfloor.app.cli")
    g.add_import(importer="connectors.modbus.connector", imported="plant_simulator.plant")
    found = violations(g)
    assert any(v.startswith("kernel module shopfloor.model imports historian.writer") for v in found)
    assert any("imports the application layer" in v for v in found)
    assert any("connectors may import only the kernel" in v for v in found)
    g.add_import(importer="shopfloor.batch", imported="shopfloor.bus")  # bus imports batch: a cycle
    assert any({"shopfloor.batch", "shopfloor.bus"} <= set(c) for c in cycles(g))
