"""The project's own XML schemas for LHEO 2.2 and 2.3 (see docs/schemas.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SCHEMA_FILES = {"2.2": "lheo-2.2.xsd", "2.3": "lheo-2.3.xsd"}


def schema_path(lheo_version: str) -> Path:
    """Path of the project's XSD for an LHEO version ("2.2" or "2.3")."""
    try:
        name = SCHEMA_FILES[lheo_version]
    except KeyError:
        raise ValueError(f"unknown LHEO version {lheo_version!r}; known: 2.2, 2.3") from None
    return Path(str(resources.files(__package__).joinpath(name)))
