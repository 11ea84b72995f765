"""Every environment variable is declared and read in core/settings.py, nowhere else.

Before, `KAIROS_*` variables were read in a dozen modules, and two of them disagreed on
the default sources file. The scan below fails when a module reads the environment itself
or names a `KAIROS_` variable the table does not declare.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from core import settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "pipelines", "transforms", "samples", "quality_checks", "lheo_schemas", "dags")
# Not a read: GX's own switch, set (setdefault) before GX is imported.
WRITES = {("quality_checks/gx_validation.py", "setdefault")}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py"))


def _environment_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = str(path.relative_to(PROJECT_ROOT))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"{name}:{node.lineno}")
    for node in ast.walk(tree):  # os.environ.setdefault(...) declared above is allowed
        if (
            isinstance(node, ast.Attribute)
            and (name, node.attr) in WRITES
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
        ):
            found.remove(f"{name}:{node.value.lineno}")
    return found


def test_only_core_settings_reads_the_environment() -> None:
    reads = [r for p in _modules() for r in _environment_reads(p)]
    assert reads and all(r.startswith("core/settings.py:") for r in reads), reads


def test_every_kairos_variable_named_in_the_code_is_declared() -> None:
    named = {
        m
        for p in _modules()
        for m in re.findall(r"\bKAIROS_[A-Z_]+[A-Z]\b", p.read_text(encoding="utf-8"))
    }
    assert len(named) > 15
    assert sorted(named - set(settings.VARIABLES)) == []


def test_values_are_read_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAIROS_LANDING_ZONE", raising=False)
    assert settings.path("KAIROS_LANDING_ZONE", tmp_path / "default") == tmp_path / "default"
    monkeypatch.setenv("KAIROS_LANDING_ZONE", str(tmp_path / "set"))
    assert settings.path("KAIROS_LANDING_ZONE", tmp_path / "default") == tmp_path / "set"
    monkeypatch.setenv("KAIROS_GX_LOG_LEVEL", "")
    assert settings.get("KAIROS_GX_LOG_LEVEL", "WARNING") == "WARNING"  # empty = unset
    assert "KAIROS_GX_LOG_LEVEL" not in settings.environment()
    with pytest.raises(KeyError, match="undeclared setting KAIROS_NOPE"):
        settings.get("KAIROS_NOPE")
