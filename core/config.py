"""Per-source configuration: `config/sources.yaml` (the file `kairos-sync … --config` reads).

Contract::

    sources:
      <source name>:
        lheo_version: "2.3"        # optional; detected from the namespace otherwise
        guichet_unique:            # any matching matcher keeps all sessions under the mandataire
          - mandataire_siret: "31415926530000"
          - action_numero_prefix: "AVN-"
          - extra: {info: programme, value: "#Avenir"}
        max_close_share: 0.2       # refuse a snapshot closing more than this share of open sessions
        lock_timeout_seconds: 600  # bounded wait for a concurrent run of the same source

Other stages add their own keys (snapshot location, report recipients…): unknown keys are
kept in `SourceConfig.options` untouched, never rejected, so one file serves every stage.
The keys this module knows are validated, and every error names the file and the key path.

Guichet unique is configuration, never a hard-coded programme name: DOMAIN.md (Normandie
deck "SMF et KAIROS", obligations deck) asks for "a configurable rule (which
programmes/markets)".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core import settings as core_settings
from core.db import PROJECT_ROOT

DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "sources.yaml"
DEFAULT_MAX_CLOSE_SHARE = 0.2
DEFAULT_LOCK_TIMEOUT_SECONDS = 600.0

MatcherKind = Literal["mandataire_siret", "action_numero_prefix", "extra"]


class ConfigError(ValueError):
    """An invalid sources file: the message names the file and the key."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        super().__init__(f"{file}: {key}: {message}")


@dataclass(frozen=True, slots=True)
class GuichetUniqueMatcher:
    """One guichet-unique rule. `value` is the SIRET, the prefix or the extra's text;
    `info` is the extra's `info` attribute (extra matchers only)."""

    kind: MatcherKind
    value: str
    info: str | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    lheo_version: Literal["2.2", "2.3"] | None = None
    guichet_unique: tuple[GuichetUniqueMatcher, ...] = ()
    max_close_share: float = DEFAULT_MAX_CLOSE_SHARE
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    # Keys owned by other stages, kept as parsed.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    sources: Mapping[str, SourceConfig]
    path: str = "<memory>"

    def source(self, name: str) -> SourceConfig:
        """The configuration of `name`; a clear error when the source is not configured."""
        try:
            return self.sources[name]
        except KeyError:
            known = ", ".join(sorted(self.sources)) or "none"
            raise ConfigError(
                self.path, f"sources.{name}", f"unknown source (configured: {known})"
            ) from None


def default_config_path() -> Path:
    """The sources file every entry point reads when none is given: KAIROS_SOURCES_CONFIG,
    else config/sources.yaml (the CLI and the DAGs must never read different files)."""
    return core_settings.path("KAIROS_SOURCES_CONFIG", DEFAULT_CONFIG_PATH)


def load_config(path: Path | str | None = None) -> SourcesConfig:
    """Parse and validate a sources file (default: `default_config_path()`)."""
    file = Path(path) if path is not None else default_config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "<file>", f"cannot read: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(file, "<file>", f"not valid YAML: {exc}") from exc
    return parse_config(document, file)


def resolve_config(config: SourcesConfig | Path | str | None) -> SourcesConfig:
    """Accept an already parsed config, a path, or None (the default file)."""
    if isinstance(config, SourcesConfig):
        return config
    return load_config(config)


def parse_config(document: object, file: Path | str = "<memory>") -> SourcesConfig:
    """Validate the parsed YAML document `document` read from `file`."""
    if not isinstance(document, dict):
        raise ConfigError(file, "<root>", "expected a mapping with a `sources` key")
    raw_sources = document.get("sources")
    if not isinstance(raw_sources, dict):
        raise ConfigError(file, "sources", "expected a mapping of source name → settings")
    sources: dict[str, SourceConfig] = {}
    for name, settings in raw_sources.items():
        key = f"sources.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(file, key, "a source name must be a non-empty string")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise ConfigError(file, key, "expected a mapping of settings")
        sources[name] = _parse_source(name, settings, file)
    return SourcesConfig(sources=sources, path=str(file))


def _parse_source(name: str, settings: dict[str, Any], file: Path | str) -> SourceConfig:
    key = f"sources.{name}"
    version = settings.get("lheo_version")
    if version is not None:
        version = str(version)
        if version not in ("2.2", "2.3"):
            raise ConfigError(file, f"{key}.lheo_version", f"must be 2.2 or 2.3, got {version!r}")
    matchers = _parse_matchers(settings.get("guichet_unique"), f"{key}.guichet_unique", file)
    share = _number(settings, "max_close_share", DEFAULT_MAX_CLOSE_SHARE, key, file)
    if not 0.0 <= share <= 1.0:
        raise ConfigError(file, f"{key}.max_close_share", f"must be within 0 and 1, got {share}")
    timeout = _number(settings, "lock_timeout_seconds", DEFAULT_LOCK_TIMEOUT_SECONDS, key, file)
    if timeout < 0:
        raise ConfigError(file, f"{key}.lock_timeout_seconds", "must be positive or zero")
    known = {"lheo_version", "guichet_unique", "max_close_share", "lock_timeout_seconds"}
    options = {k: v for k, v in settings.items() if k not in known}
    return SourceConfig(
        name=name,
        lheo_version=version,  # type: ignore[arg-type]  # checked just above
        guichet_unique=matchers,
        max_close_share=share,
        lock_timeout_seconds=timeout,
        options=options,
    )


def _number(
    settings: dict[str, Any], name: str, default: float, key: str, file: Path | str
) -> float:
    value = settings.get(name, default)
    # bool is an int in Python; `max_close_share: yes` is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(file, f"{key}.{name}", f"expected a number, got {value!r}")
    return float(value)


def _parse_matchers(raw: object, key: str, file: Path | str) -> tuple[GuichetUniqueMatcher, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(file, key, "expected a list of matchers")
    matchers: list[GuichetUniqueMatcher] = []
    for index, item in enumerate(raw):
        item_key = f"{key}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(
                file,
                item_key,
                "expected exactly one of mandataire_siret, action_numero_prefix, extra",
            )
        ((kind, value),) = item.items()
        if kind in ("mandataire_siret", "action_numero_prefix"):
            if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
                raise ConfigError(file, f"{item_key}.{kind}", "expected a non-empty string")
            text = str(value)
            if kind == "mandataire_siret" and (len(text) != 14 or not text.isdigit()):
                # An int in YAML loses leading zeros: insist on a quoted 14-digit string.
                raise ConfigError(
                    file, f"{item_key}.{kind}", f'expected 14 digits in quotes, got "{text}"'
                )
            matchers.append(GuichetUniqueMatcher(kind, text))
        elif kind == "extra":
            if not isinstance(value, dict) or "value" not in value:
                raise ConfigError(file, f"{item_key}.extra", "expected {info: …, value: …}")
            unknown = set(value) - {"info", "value"}
            if unknown:
                raise ConfigError(
                    file, f"{item_key}.extra", f"unknown keys {sorted(unknown)} (info, value)"
                )
            info = value.get("info")
            if info is not None and not isinstance(info, str):
                raise ConfigError(file, f"{item_key}.extra.info", "expected a string")
            if not isinstance(value["value"], str | int | float) or isinstance(
                value["value"], bool
            ):
                raise ConfigError(file, f"{item_key}.extra.value", "expected a string")
            matchers.append(GuichetUniqueMatcher("extra", str(value["value"]), info))
        else:
            raise ConfigError(
                file,
                f"{item_key}.{kind}",
                "unknown matcher (mandataire_siret, action_numero_prefix, extra)",
            )
    return tuple(matchers)


def report_recipients(config: SourcesConfig, source: str | None = None) -> tuple[str, ...]:
    """E-mail recipients of the Region's quality report (docs/report.md), from each source's
    `report: {recipients: [...]}` key: that source's, or every source's when `source` is None
    (deduplicated, file order). Validated here so that a typo fails before any sending."""
    names = [source] if source is not None else list(config.sources)
    found: list[str] = []
    for name in names:
        options = config.source(name).options
        report = options.get("report") or {}
        key = f"sources.{name}.report"
        if not isinstance(report, dict):
            raise ConfigError(config.path, key, "expected a mapping with `recipients`")
        recipients = report.get("recipients") or []
        if not isinstance(recipients, list):
            raise ConfigError(config.path, f"{key}.recipients", "expected a list of addresses")
        for index, address in enumerate(recipients):
            if (
                not isinstance(address, str)
                or "@" not in address
                or any(c.isspace() for c in address.strip())
            ):
                raise ConfigError(
                    config.path, f"{key}.recipients[{index}]", f"not an address: {address!r}"
                )
            if address.strip() not in found:
                found.append(address.strip())
    return tuple(found)
