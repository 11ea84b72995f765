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
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import yaml

from pipelines.db import SQL_DIR, read_sql

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
        """The sentence that says what exactly is wrong in this flagged row ('' if none)."""
        key = str(row.get("detail_key") or "")
        prefix = key.partition(":")[0]
        count = row.get("detail_count")
        if self.id == HEADLINE_RULE and not count:
            template = self.details.get("none", "")
        else:
            template = self.details.get(prefix) or self.details.get("default", "")
        if not template:
            return ""
        fields = ", ".join(FIELD_LABELS.get(f, f) for f in key.split(",") if f)
        # Slot-level keys carry the modality: "ico:<slot>" or "<reason>:ico:<slot>".
        modality = next((part for part in key.split(":") if part in MODALITY_LABELS), "")
        return template.format(
            count=count if count is not None else "?",
            date=format_date(row.get("detail_date")),
            fields=fields,
            slot=MODALITY_LABELS.get(modality, modality or "modalité"),
            reason=key,
        )

    def full_message(self, row: Mapping[str, Any]) -> str:
        detail = self.detail(row)
        return f"{self.message} {detail}" if detail else self.message


@cache
def _fragments() -> dict[str, str]:
    """sql/checks/fragments/*.sql: definitions several rules share ("recruiting on :as_of")."""
    return {
        path.stem: strip_comments(path.read_text(encoding="utf-8")).strip()
        for path in sorted((CHECKS_DIR / "fragments").glob("*.sql"))
    }


def splice_fragments(query: str) -> str:
    """Replace each `{name}` of sql/checks/fragments/name.sql by that shared definition.

    str.replace, not str.format: Great Expectations owns the `{batch}` placeholder.
    """
    for name, fragment in _fragments().items():
        query = query.replace(f"{{{name}}}", f"(\n{fragment}\n)")
    return query


def read_query(relative_path: str) -> str:
    """A file of sql/ without its comments (see `strip_comments`) and with the shared
    fragments spliced in, ready for `text()`."""
    return splice_fragments(strip_comments(read_sql(relative_path)))


def strip_comments(sql: str) -> str:
    """The SQL without its whole-line `--` comments (the files keep comments on own lines).

    SQLAlchemy's `text()` does not parse comments: a `:name` written in one becomes a bind
    parameter, which SQLite then counts against the placeholders it really sees.
    """
    return "\n".join(
        line for line in sql.splitlines() if not line.lstrip().startswith("--")
    ).strip()


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


def bind_parameters(as_of: dt.date) -> dict[str, dt.date]:
    """Every parameter a rule may bind. Unused ones are ignored by `bindparams` callers."""
    return {
        "as_of": as_of,
        "as_of_minus_3": as_of - dt.timedelta(days=3),  # décret 2019-1386: three days
        "as_of_minus_7": as_of - dt.timedelta(days=7),  # presence: more than 7 days
        "as_of_minus_15": as_of - dt.timedelta(days=15),  # result: more than 15 days
        "year_start": as_of.replace(month=1, day=1),  # current market year (seed 002)
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
