"""The quality rules' registry: metadata from rules.yaml, SQL from sql/checks/<id>.sql.

A rule is data (id, severity, who acts, French message, source document) plus one SQL file
evaluated "as of" a date. The SQL only takes bound parameters (`bind_parameters`): the
date arithmetic is done here, in Python, so the very same text runs on PostgreSQL and SQLite
(`:as_of - 7` would need `INTERVAL` on one and `date()` on the other).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import yaml

from core import settings
from core.db import SQL_DIR, read_sql, splice_fragments, strip_comments

RULES_FILE = Path(__file__).with_name("rules.yaml")
CHECKS_DIR = SQL_DIR / "checks"
Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
SEVERITY_LABELS: dict[str, str] = {
    "error": "Bloquant",
    "warning": "À corriger",
    "info": "Bonne pratique",
}
HEADLINE_RULE = "no_open_recruitment_modality"

# The columns every sql/checks file returns, in this order (tests assert it).
RESULT_COLUMNS: tuple[str, ...] = (
    "kairos_session_id",
    "source",
    "carif_formation_numero",
    "carif_action_numero",
    "carif_session_numero",
    "dispensateur_siret",
    "mandataire_siret",
    "departement",
    "detail_key",
    "detail_count",
    "detail_date",
)

# Field codes of missing_kairos_field.sql, as a French reader names them.
FIELD_LABELS: dict[str, str] = {
    "intitule": "intitulé",
    "formacode": "formacode principal",
    "objectif": "objectif",
    "contenu": "contenu",
    "duree": "durée",
    "debut": "date de début",
    "fin": "date de fin",
    "lieu": "lieu de formation",
    "financeur": "financeur",
}
MODALITY_LABELS: dict[str, str] = {
    "ico": "information collective",
    "rdvi": "rendez-vous individuels",
    "candidature": "candidature",
}


class RuleConfigError(ValueError):
    """rules.yaml and sql/checks disagree, or an entry is malformed."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    title: str
    acts_label: str
    message: str
    source: str
    headline: bool = False
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def sql_path(self) -> Path:
        return CHECKS_DIR / f"{self.id}.sql"

    def sql(self) -> str:
        """The rule's query, with GX's `{batch}` placeholder (see gx_rules.py).

        Whole-line `--` comments are dropped: `text()` would read a `:as_of` in a comment as
        a parameter and GX would substitute a `{batch}` written in one.
        """
        return splice_fragments(strip_comments(read_sql(f"checks/{self.id}.sql")))

    def plain_sql(self) -> str:
        """The query on the kairos_session table itself, runnable without GX."""
        return self.sql().format(batch="kairos_session")

    def detail(self, row: Mapping[str, Any]) -> str:
        """The sentences that say what exactly is wrong in this flagged row ('' if none):
        the template of the key's prefix (`<prefix>_none` when the count is 0, else
        `default`), then one `+<part>` sentence per further part of the key that has one."""
        key = str(row.get("detail_key") or "")
        prefix, *parts = key.split(":")
        count = row.get("detail_count")
        template = (self.details.get(f"{prefix}_none") if count == 0 else None) or self.details.get(
            prefix, self.details.get("default", "")
        )
        sentences = [template] + [self.details[f"+{p}"] for p in parts if f"+{p}" in self.details]
        fields = ", ".join(FIELD_LABELS.get(f, f) for f in key.split(",") if f)
        # Slot-level keys carry the modality: "ico:<slot>" or "<reason>:ico:<slot>".
        modality = next((part for part in key.split(":") if part in MODALITY_LABELS), "")
        values = {
            "count": count if count is not None else "?",
            "date": format_date(row.get("detail_date")),
            "fields": fields,
            "slot": MODALITY_LABELS.get(modality, modality or "modalité"),
            "reason": key,
        }
        return " ".join(" ".join(s.split()).format(**values) for s in sentences if s)

    def full_message(self, row: Mapping[str, Any]) -> str:
        detail = self.detail(row)
        return f"{self.message} {detail}" if detail else self.message


def format_date(value: object) -> str:
    """JJ/MM/AAAA for a date (or an ISO string, as SQLite returns them); '?' when unknown."""
    if value is None or value == "":
        return "?"
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).strftime("%d/%m/%Y")
        except ValueError:
            return value
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return str(value)


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """The rules' tunable delays (docs/quality-checks.md). `from_env` reads
    KAIROS_MODALITIES_MAX_AGE_DAYS and KAIROS_RESULT_DAYS_BEFORE_START."""

    # A KAIROS modalities export older than this (days before the as-of date) does not
    # tell what KAIROS offers: "KAIROS non vérifié" instead of "bloquée".
    kairos_max_age_days: int = 2
    # The result of a present candidate is due when the session starts within this many days.
    result_days_before_start: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CheckSettings:
        env = settings.environment() if env is None else env
        values: dict[str, int] = {}
        for name, variable in (
            ("kairos_max_age_days", "KAIROS_MODALITIES_MAX_AGE_DAYS"),
            ("result_days_before_start", "KAIROS_RESULT_DAYS_BEFORE_START"),
        ):
            text = (env.get(variable) or "").strip()
            if text:
                if not text.isdigit():
                    raise RuleConfigError(f"{variable} must be a number of days, got {text!r}")
                values[name] = int(text)
        return cls(**values)


def check_settings(
    kairos_max_age_days: int | None = None, result_days_before_start: int | None = None
) -> CheckSettings:
    """The settings from the environment, with the values given here instead when set."""
    settings = CheckSettings.from_env()
    if kairos_max_age_days is not None:
        settings = replace(settings, kairos_max_age_days=kairos_max_age_days)
    if result_days_before_start is not None:
        settings = replace(settings, result_days_before_start=result_days_before_start)
    return settings


def bind_parameters(as_of: dt.date, settings: CheckSettings | None = None) -> dict[str, dt.date]:
    """Every parameter a rule may bind. Unused ones are ignored by `bindparams` callers."""
    settings = settings or CheckSettings()
    result_days = dt.timedelta(days=settings.result_days_before_start)
    return {
        "as_of": as_of,
        "as_of_minus_3": as_of - dt.timedelta(days=3),  # décret 2019-1386: three days
        "as_of_minus_7": as_of - dt.timedelta(days=7),  # presence: more than 7 days
        "result_due_by": as_of + result_days,  # result: the session starts within N days
        "as_of_minus_result_days": as_of - result_days,
        "kairos_seen_since": as_of - dt.timedelta(days=settings.kairos_max_age_days),
        "year_start": as_of.replace(month=1, day=1),  # current market year (#Avenir)
    }


def bound(sql: str, parameters: Mapping[str, object]) -> sa.TextClause:
    """`text(sql)` with the parameters it names bound (dates as `Date`, so that SQLite
    compares ISO text and PostgreSQL dates). `\\b` so that `:as_of` is not found inside
    `:as_of_minus_7`; `bindparams` rejects names the query does not use."""
    statement = sa.text(sql)
    used = [name for name in parameters if re.search(rf":{re.escape(name)}\b", sql)]
    if used:
        statement = statement.bindparams(
            *(
                sa.bindparam(name, parameters[name], type_=sa.Date())
                if isinstance(parameters[name], dt.date)
                else sa.bindparam(name, parameters[name])
                for name in used
            )
        )
    return statement


@cache
def load_rules() -> tuple[Rule, ...]:
    """The rules in file order; every rule has its SQL file and every SQL file its rule."""
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RuleConfigError(f"{RULES_FILE}: expected a `rules` list")
    rules: list[Rule] = []
    for index, entry in enumerate(document["rules"]):
        where = f"{RULES_FILE}: rules[{index}]"
        if not isinstance(entry, dict):
            raise RuleConfigError(f"{where}: expected a mapping")
        missing = {"id", "severity", "title", "acts_label", "message", "source"} - set(entry)
        if missing:
            raise RuleConfigError(f"{where}: missing {sorted(missing)}")
        if entry["severity"] not in SEVERITY_ORDER:
            raise RuleConfigError(f"{where}.severity: {entry['severity']!r}")
        details = entry.get("details") or {}
        if not isinstance(details, dict):
            raise RuleConfigError(f"{where}.details: expected a mapping")
        rule = Rule(
            id=str(entry["id"]),
            severity=entry["severity"],
            title=str(entry["title"]),
            acts_label=str(entry["acts_label"]),
            message=" ".join(str(entry["message"]).split()),
            source=" ".join(str(entry["source"]).split()),
            headline=bool(entry.get("headline", False)),
            details={str(k): str(v) for k, v in details.items()},
        )
        if not rule.sql_path.is_file():
            raise RuleConfigError(f"{where}: no SQL file {rule.sql_path}")
        rules.append(rule)
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise RuleConfigError(f"{RULES_FILE}: duplicate rule ids")
    files = {p.stem for p in CHECKS_DIR.glob("*.sql")}
    orphans = files - set(ids)
    if orphans:
        raise RuleConfigError(f"{CHECKS_DIR}: SQL without a rule in rules.yaml: {sorted(orphans)}")
    if sum(r.headline for r in rules) != 1 or not any(r.id == HEADLINE_RULE for r in rules):
        raise RuleConfigError(f"{RULES_FILE}: exactly one headline rule, {HEADLINE_RULE}")
    return tuple(rules)


@cache
def rules_by_id() -> dict[str, Rule]:
    return {rule.id: rule for rule in load_rules()}


def render_message(row: Mapping[str, Any]) -> str:
    """A stored flag's French message: rendered from rules.yaml and the row's detail
    columns (runs since migration 0005 store none), else the message it was stored with."""
    stored = row.get("message")
    if stored:
        return str(stored)
    rule = rules_by_id().get(str(row.get("rule_id")))
    return rule.full_message(row) if rule is not None else ""
