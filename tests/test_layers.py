"""The package layout is the architecture: every import points down a layer, and no circles.

The layers (top to bottom) are the ones drawn in ``docs/ARCHITECTURE.md``. A module may import
its own package, anything in a lower layer, and a package beside it in the same layer, as long
as that makes no circle. ``gateway.localrt`` is a separate server: the core never imports it
(only ``__main__`` starts it) and it imports nothing of the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gateway"

#: Top to bottom. Keys are module prefixes; the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, ...]] = [
    ("gateway.__main__", "gateway.app", "gateway.lifecycle"),
    ("gateway.api",),
    ("gateway.supervise",),
    ("gateway.call",),
    ("gateway.cluster",),
    ("gateway.legs", "gateway.upstream", "gateway.recording"),
    ("gateway.tools", "gateway.obs", "gateway.audio"),
    ("gateway.config", "gateway.ids", "gateway.errors", "gateway.jsonlimits",
     "gateway.children", "gateway.allocator"),
]
LOCALRT = "gateway.localrt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every gateway module ``path`` imports, at any depth (function-level and
    ``TYPE_CHECKING`` imports too: a circle through a type is still a circle)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("gateway"):
                continue
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            subs = [f"{target}.{a.name}" for a in node.names]
            real = [s for s in subs if _exists(s)]
            found.update(real or [target])
    found.discard(mod)
    return found


def _exists(mod: str) -> bool:
    p = ROOT.parent / mod.replace(".", "/")
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def layer_of(mod: str) -> int | None:
    best: tuple[int, int] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (rank, len(p))
    return None if best is None else best[0]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_core_module_has_a_layer() -> None:
    homeless = [m for m in graph() if m != "gateway" and not m.startswith(LOCALRT)
                and layer_of(m) is None]
    assert homeless == [], f"modules outside every layer (add them to LAYERS and the docs): " \
                           f"{homeless}"


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    upward = []
    for mod, deps in g.items():
        if mod.startswith(LOCALRT) or mod == "gateway":
            continue
        mine = layer_of(mod)
        assert mine is not None
        for dep in deps:
            if dep.startswith(LOCALRT):
                if mod != "gateway.__main__":
                    upward.append(f"{mod} -> {dep} (the core never imports the engine)")
                continue
            theirs = layer_of(dep)
            if dep != "gateway" and theirs is not None and theirs < mine:
                upward.append(f"{mod} -> {dep}")
    return sorted(upward)


def test_imports_point_down() -> None:
    assert upward_imports(graph()) == [], "imports that run up a layer"


def test_the_engine_imports_nothing_of_the_core() -> None:
    # Pure audio conversions (G.711 tables) are the one shared floor.
    bad = [f"{m} -> {d}" for m, deps in graph().items() if m.startswith(LOCALRT)
           for d in deps if not d.startswith((LOCALRT, "gateway.audio."))]
    assert bad == []


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    # Packages' __init__ re-exports are edges too, but a package importing its own modules
    # is not a circle with them.
    g = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph().items()}
    assert cycles(g) == []


@pytest.mark.parametrize("bad, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_the_circle_finder_finds_circles(bad: dict[str, set[str]],
                                         expected: list[list[str]]) -> None:
    assert cycles(bad) == expected


def test_the_layer_check_sees_an_upward_import() -> None:
    real = graph()
    assert "gateway.audio.rechunk" in real["gateway.legs.websocket"]
    # A leg that reached for the app's keys, and the core reaching for the engine:
    bad = dict(real)
    bad["gateway.legs.websocket"] = real["gateway.legs.websocket"] | {"gateway.api.appkeys"}
    bad["gateway.call.session"] = real["gateway.call.session"] | {"gateway.localrt.server"}
    assert upward_imports(bad) == [
        "gateway.call.session -> gateway.localrt.server (the core never imports the engine)",
        "gateway.legs.websocket -> gateway.api.appkeys",
    ]
