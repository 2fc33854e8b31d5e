"""The layers of ARCHITECTURE.md, checked on the source: who may import whom, and no import cycles.

Every `import` in a module counts (also those inside functions or under TYPE_CHECKING): a lazy import still couples
the two modules, and a cycle held together by one is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "cogs", "db", "qwen_tts", "finetuning")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue  # Alembic scripts are loaded by file, not imported
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (resolved to the longest known module name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {_known(t) for t in targets if _known(t) and _known(t) != name}


def _known(target: str) -> str | None:
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_import_cycles() -> None:
    # Package __init__ modules that only re-export lazily are edges too; a cycle anywhere fails.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("qwen_tts", {"bot", "cogs", "db", "finetuning"}),
        ("db", {"bot", "cogs", "qwen_tts", "finetuning"}),
        ("cogs", {"db", "qwen_tts", "finetuning"}),
        ("finetuning", {"bot", "cogs", "db"}),
    ],
)
def test_lower_layers_never_import_upwards(layer: str, forbidden: set[str]) -> None:
    bad = sorted(
        f"{m} -> {t}" for m, targets in GRAPH.items() if _top(m) == layer for t in targets if _top(t) in forbidden
    )
    assert not bad, "\n".join(bad)


def test_only_the_local_engine_imports_the_model() -> None:
    reaching = sorted(
        m for m, targets in GRAPH.items() if _top(m) == "bot" and any(_top(t) == "qwen_tts" for t in targets)
    )
    assert reaching == ["bot.engine.local"]


def test_qwen_tts_reads_no_bot_setting() -> None:
    offenders = [
        str(p.relative_to(ROOT)) for n, p in MODULES.items() if _top(n) == "qwen_tts" and "NARRATOR_" in p.read_text()
    ]
    assert not offenders
