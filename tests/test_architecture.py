"""The floors of the code (docs/architecture.md): no module imports from a floor above its own.

Read from the code's own imports (every `import` and `from … import`, at module level or
inside a function), so a new arrow running back up fails here before it lands.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "lheo_schemas", "transforms", "samples", "quality_checks", "pipelines", "dags")
# What each floor may import (besides itself): the floors below it.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "lheo_schemas": set(),
    "transforms": {"core", "lheo_schemas"},
    "samples": {"core", "lheo_schemas", "transforms"},
    "quality_checks": {"core"},
    "pipelines": {"core", "lheo_schemas", "transforms", "samples", "quality_checks"},
    "dags": {"core", "pipelines"},
}
# The top floor of pipelines/: the entry points (the CLI, the Airflow steps, the demo).
# The stages below them (fetch, load, KAIROS exports, export) never import them.
ENTRY_POINTS = {
    "pipelines.cli",
    "pipelines.cli_errors",
    "pipelines.orchestration",
    "pipelines.report_step",
    "pipelines.notify",
    "pipelines.airflow_connections",
    "pipelines.demo",
}


def _imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every project import."""
    found = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                found += [(module, n) for n in names if n.split(".")[0] in PACKAGES]
    return found


def _is_entry_point(module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS)


def test_no_import_runs_back_up_a_floor() -> None:
    imports = _imports()
    assert len(imports) > 100  # the scan read the code
    upward = [
        f"{source} imports {target}"
        for source, target in imports
        if target.split(".")[0] != source.split(".")[0]
        and target.split(".")[0] not in MAY_IMPORT[source.split(".")[0]]
    ]
    assert upward == []


def test_stages_never_import_the_entry_points() -> None:
    imports = _imports()
    stage_to_entry = [
        f"{source} imports {target}"
        for source, target in imports
        if source.startswith("pipelines.")
        and not _is_entry_point(source)
        and _is_entry_point(target)
    ]
    assert stage_to_entry == []
    # The scan sees the entry points' own imports (a check that ENTRY_POINTS is not stale).
    assert {s for s, _t in imports if _is_entry_point(s)} >= {"pipelines.cli", "pipelines.notify"}
