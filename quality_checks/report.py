"""The Region's report: HTML (French, Jinja2, inline CSS, tables), PNG charts, CSV of flags.

`build_report(url, as_of, out)` runs the checks (runner.py), reads what the check-result
table says about this run, the previous one and the trend, and writes into `out`:

* `rapport.html`   the report, images referenced as files beside it (for a browser);
* `email.html`     the same report with images as `cid:` references (for the e-mail);
* `tendance.png`, `regles.png`   the charts (matplotlib, Agg backend), with alt text;
* `signalements.csv`   every flag (UTF-8 with BOM, `;`, formula-like cells neutralised);
* `report.json`    the manifest mail.py needs to (re)send: subject, scope, the check run,
  and every file with its size and SHA-256 (mail.py sends nothing that differs).

The folder is replaced whole or not at all (publish.staged_folder): the files are written
into a temporary folder beside `out` and swapped in by renames, so a full disk or any other
failure leaves the previous report exactly as it was (ReportWriteError). The records of
sending (`sent.json`, `sending.json`, mail.py) are carried over into the new folder.

Personal data never reaches the report: the queries select organisations (raison sociale,
SIRET, N° DA) and sessions, never a person's name, e-mail or phone, and no candidate.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Connection, text

from core.db import get_engine, read_query
from quality_checks.publish import file_digest, staged_folder
from quality_checks.rules import (
    FIELD_LABELS,
    HEADLINE_RULE,
    SEVERITY_LABELS,
    SEVERITY_ORDER,
    format_date,
    load_rules,
    render_message,
)
from quality_checks.runner import CheckRun, run_checks, stored_check_run

TEMPLATES = Path(__file__).with_name("templates")
TREND_RUNS = 30
# Rows per list: on disk, and in the e-mail, where Gmail clips messages over ~100 kB and
# inline styles are repeated in every cell. The CSV attachment always has every flag.
LIST_LIMIT = 200
EMAIL_LIST_LIMIT = 20
TOP_LIMIT = 30
EMAIL_TOP_LIMIT = 15
CSV_NAME = "signalements.csv"
HTML_NAME = "rapport.html"
EMAIL_HTML_NAME = "email.html"
MANIFEST_NAME = "report.json"
MANIFEST_VERSION = 2  # 2: `files` with sizes and SHA-256 digests
# Records of the folder's sendings (mail.py): not part of the report, kept across rewrites.
SENT_NAME = "sent.json"
SENDING_NAME = "sending.json"
CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rule_id", "regle"),
    ("rule_title", "libelle_regle"),
    ("severity", "gravite"),
    ("as_of", "date_controle"),
    ("source", "source"),
    ("carif_formation_numero", "numero_formation"),
    ("carif_action_numero", "numero_action"),
    ("carif_session_numero", "numero_session"),
    ("dispensateur_siret", "siret_dispensateur"),
    ("dispensateur_raison_sociale", "raison_sociale_dispensateur"),
    ("mandataire_siret", "siret_mandataire"),
    ("departement", "departement"),
    ("detail_key", "detail"),
    ("detail_count", "nombre"),
    ("detail_date", "date"),
    ("message", "message"),
)
# Spreadsheets execute a cell that starts with one of these (CSV injection, OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Chart:
    name: str  # file name beside the HTML
    cid: str  # Content-ID in the e-mail
    alt: str  # the text alternative: what the chart says, in words


@dataclass(frozen=True, slots=True)
class WrittenReport:
    directory: Path
    html_path: Path
    email_html_path: Path
    csv_path: Path
    charts: tuple[Chart, ...]
    subject: str
    check_run_id: int


class ReportWriteError(RuntimeError):
    """The report could not be written (disk full, read-only…): the previous one is kept."""

    def __init__(self, out: Path, exc: OSError) -> None:
        self.errno = exc.errno
        where = f"{exc.filename}: " if exc.filename else ""
        super().__init__(
            f"the report could not be written to {out} ({where}{exc.strerror or exc}, errno "
            f"{exc.errno}); the previous report there, if any, is unchanged"
        )


def neutralise(value: object) -> str:
    """A CSV cell that a spreadsheet will show, never evaluate."""
    if value is None:
        return ""
    cell = value.isoformat() if isinstance(value, dt.date) else str(value)
    if cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def write_csv(path: Path, flags: Sequence[Mapping[str, Any]]) -> int:
    """Every flag, for a French spreadsheet: UTF-8 with BOM, `;` separator."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", quoting=csv.QUOTE_MINIMAL)
        writer.writerow([header for _, header in CSV_COLUMNS])
        for flag in flags:
            writer.writerow([neutralise(flag.get(key)) for key, _ in CSV_COLUMNS])
    return len(flags)


def _rows(conn: Connection, query: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(text(read_query(query)), params)]


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "0 %"
    return f"{100 * part / whole:.1f} %".replace(".", ",")


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def collect(conn: Connection, run: CheckRun) -> dict[str, Any]:
    """Everything the template shows, from the check-result tables (queries in sql/queries)."""
    rules = {rule.id: rule for rule in load_rules()}
    scope = run.source or ""
    previous = conn.execute(
        text(read_query("queries/quality_previous_run.sql")), {"scope": scope, "as_of": run.as_of}
    ).first()
    by_rule_rows = {
        r["rule_id"]: r for r in _rows(conn, "queries/quality_flags_by_rule.sql", run_id=run.id)
    }
    by_rule = [
        {
            "rule": rule,
            "severity_label": SEVERITY_LABELS[rule.severity],
            "flags": int(by_rule_rows.get(rule.id, {}).get("flags") or 0),
            "sessions": int(by_rule_rows.get(rule.id, {}).get("sessions") or 0),
        }
        for rule in sorted(rules.values(), key=lambda r: SEVERITY_ORDER[r.severity])
    ]
    trend = list(
        reversed(
            _rows(
                conn,
                "queries/quality_trend.sql",
                scope=scope,
                as_of=run.as_of,
                limit=TREND_RUNS,
            )
        )
    )
    for point in trend:
        point["as_of"] = _date(point["as_of"])
    new: list[dict[str, Any]] = []
    resolved: list[dict[str, Any]] = []
    if previous is not None:
        params = {"run_id": run.id, "previous_run_id": previous.id}
        new = _rows(conn, "queries/quality_new_flags.sql", **params)
        resolved = _rows(conn, "queries/quality_resolved_flags.sql", **params)
    headline_rows = _rows(
        conn, "queries/quality_blocked_sessions.sql", run_id=run.id, rule_id=HEADLINE_RULE
    )
    for row in headline_rows:
        row["message"] = render_message(row)
        row["constat"] = rules[HEADLINE_RULE].detail(row)
    # What each flag rests on (sql/checks/no_open_recruitment_modality.sql): blocked, or no
    # open modality in the offer with KAIROS not checked.
    blocked = [r for r in headline_rows if str(r["detail_key"]).startswith("blocked")]
    unverified = [r for r in headline_rows if not str(r["detail_key"]).startswith("blocked")]
    latest_modalities = conn.execute(
        text(read_query("queries/quality_kairos_unmatched.sql"))
    ).first()
    flags = _rows(conn, "queries/quality_flags_of_run.sql", run_id=run.id)
    for flag in flags:
        flag["rule_title"] = rules[flag["rule_id"]].title
        flag["message"] = render_message(flag)  # stored runs since 0005 keep none
    return {
        "run": run,
        "scope_label": run.source or "toutes les sources",
        "as_of": run.as_of,
        "previous_as_of": _date(previous.as_of) if previous is not None else None,
        "headline": {
            "current": run.sessions_current,
            "recruiting": run.sessions_recruiting,
            "blocked": run.sessions_blocked,
            "unverified": run.sessions_unverified,
            "share": _percent(run.sessions_blocked, run.sessions_recruiting),
        },
        "by_rule": by_rule,
        "by_dispensateur": _rows(conn, "queries/quality_flags_by_dispensateur.sql", run_id=run.id),
        "by_departement": _rows(conn, "queries/quality_flags_by_departement.sql", run_id=run.id),
        "trend": trend,
        "new": new,
        "resolved": resolved,
        "new_by_rule": _count_by_rule(new),
        "resolved_by_rule": _count_by_rule(resolved),
        "blocked": blocked,
        "unverified": unverified,
        "kairos_modalities": (
            {
                "seen": _date(latest_modalities.started_at),
                "unmatched": int(latest_modalities.unmatched or 0),
            }
            if latest_modalities is not None
            else None
        ),
        "flags": flags,
        "rules": rules,
        "expectations": [e for e in run.expectations if not e.success],
    }


def _count_by_rule(flags: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for flag in flags:
        counts[str(flag["rule_id"])] = counts.get(str(flag["rule_id"]), 0) + 1
    return counts


def draw_charts(data: Mapping[str, Any], out: Path) -> tuple[Chart, ...]:
    """The trend and per-rule charts as PNG files; the alt text says the same in words."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    charts: list[Chart] = []
    trend = data["trend"]
    fig, ax = plt.subplots(figsize=(7.2, 2.8), dpi=110)
    dates = [p["as_of"] for p in trend]
    ax.plot(
        dates,
        [p["sessions_recruiting"] for p in trend],
        marker="o",
        color="#1f6fb2",
        label="En recrutement",
    )
    ax.plot(
        dates,
        [p["sessions_blocked"] for p in trend],
        marker="o",
        color="#c0392b",
        label="Bloquées (aucune modalité ouverte, KAIROS vérifié)",
    )
    ax.plot(
        dates,
        [p["sessions_unverified"] or 0 for p in trend],
        marker="o",
        color="#e67e22",
        label="Aucune modalité visible dans l'offre (KAIROS non vérifié)",
    )
    ax.set_ylim(bottom=0, top=max([p["sessions_recruiting"] or 0 for p in trend] + [1]) * 1.25)
    ax.grid(axis="y", color="#dddddd")
    # Legend above the plot area, so it never hides the first points.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=7, frameon=False)
    ax.tick_params(labelsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m"))
    if len(dates) <= 12:
        ax.set_xticks(dates)
    fig.tight_layout()
    fig.savefig(out / "tendance.png")
    plt.close(fig)
    if trend:
        first, last = trend[0], trend[-1]
        alt = (
            f"Évolution sur {len(trend)} contrôle(s), du {format_date(first['as_of'])} au "
            f"{format_date(last['as_of'])} : sessions bloquées passées de "
            f"{first['sessions_blocked']} à {last['sessions_blocked']}, sessions sans modalité "
            f"visible dans l'offre (KAIROS non vérifié) de {first['sessions_unverified'] or 0} "
            f"à {last['sessions_unverified'] or 0}, sessions en recrutement "
            f"de {first['sessions_recruiting']} à {last['sessions_recruiting']}."
        )
    else:
        alt = "Pas encore d'historique de contrôles."
    charts.append(Chart("tendance.png", "tendance@kairos-sync", alt))

    by_rule = [r for r in data["by_rule"] if r["flags"]]
    fig, ax = plt.subplots(figsize=(7.2, 0.4 + 0.32 * max(len(by_rule), 1)), dpi=110)
    colours = {"error": "#c0392b", "warning": "#e67e22", "info": "#7f8c8d"}
    labels = [r["rule"].title for r in by_rule][::-1]
    values = [r["flags"] for r in by_rule][::-1]
    ax.barh(labels, values, color=[colours[r["rule"].severity] for r in by_rule][::-1])
    for index, value in enumerate(values):
        ax.text(value, index, f" {value}", va="center", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_xlim(0, max([*values, 1]) * 1.15)  # room for the value labels
    ax.set_xlabel("Signalements", fontsize=8)
    ax.grid(axis="x", color="#eeeeee")
    fig.tight_layout()
    fig.savefig(out / "regles.png")
    plt.close(fig)
    alt = (
        "Signalements par règle : "
        + ("; ".join(f"{r['rule'].title} : {r['flags']}" for r in by_rule) or "aucun")
        + "."
    )
    charts.append(Chart("regles.png", "regles@kairos-sync", alt))
    return tuple(charts)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["date_fr"] = format_date
    env.filters["nombre"] = lambda n: f"{int(n or 0):,}".replace(",", "\u202f")
    env.filters["fields_fr"] = lambda key: ", ".join(
        FIELD_LABELS.get(f, f) for f in str(key or "").split(",") if f
    )
    return env


def subject(data: Mapping[str, Any]) -> str:
    h = data["headline"]
    unverified = (
        f" (+{h['unverified']} sans modalité visible, KAIROS non vérifié)"
        if h["unverified"]
        else ""
    )
    return (
        f"[KAIROS] Contrôle qualité au {format_date(data['as_of'])} ({data['scope_label']}) : "
        f"{h['blocked']} session(s) bloquée(s) sur {h['recruiting']} en recrutement{unverified}"
    )


def plain_text(data: Mapping[str, Any]) -> str:
    """The text/plain alternative: the headline figures and what to open."""
    h = data["headline"]
    lines = [
        subject(data),
        "",
        f"Sessions synchronisées : {h['current']}",
        f"Sessions en recrutement : {h['recruiting']}",
        "Sessions bloquées (aucune modalité ouverte, ni dans l'offre ni dans KAIROS) : "
        f"{h['blocked']}",
        f"Sessions sans modalité visible dans l'offre, KAIROS non vérifié : {h['unverified']}",
        f"Part des sessions en recrutement bloquées : {h['share']}",
        "",
        "Signalements par règle :",
        *(f"- {r['rule'].title} : {r['flags']}" for r in data["by_rule"]),
        "",
        f"Le détail est dans la version HTML de ce message et dans {CSV_NAME}.",
        *([f"Ce rapport en ligne : {data['link']}"] if data.get("link") else []),
        "Ce message ne contient aucune donnée personnelle.",
    ]
    return "\n".join(lines)


def render(data: Mapping[str, Any], charts: Sequence[Chart], *, email: bool) -> str:
    images = {
        chart.name.removesuffix(".png"): {
            "src": f"cid:{chart.cid}" if email else chart.name,
            "alt": chart.alt,
        }
        for chart in charts
    }
    template = _environment().get_template("report.html.j2")
    return template.render(
        **data,
        images=images,
        subject=subject(data),
        list_limit=EMAIL_LIST_LIMIT if email else LIST_LIMIT,
        top_limit=EMAIL_TOP_LIMIT if email else TOP_LIMIT,
        severity_labels=SEVERITY_LABELS,
        csv_name=CSV_NAME,
        generated_at=dt.datetime.now().astimezone().strftime("%d/%m/%Y %H:%M"),
    )


def build_report(
    url: str | None,
    as_of: dt.date,
    out: Path,
    *,
    source: str | None = None,
    check_run_id: int | None = None,
    link: str | None = None,
) -> WrittenReport:
    """Write the report into `out` (created if needed): of the stored check run
    `check_run_id` when given (it must be of `source` as of `as_of`), else of a check run
    evaluated now. `link`: where the report can be opened (a web server over the reports
    folder), printed at the top of the report and of its e-mail."""
    if check_run_id is not None:
        run = stored_check_run(url, check_run_id, source=source, as_of=as_of)
    else:
        run = run_checks(url, as_of, source=source)
    return write_report(url, run, out, link=link)


def write_report(
    url: str | None, run: CheckRun, out: Path, *, link: str | None = None
) -> WrittenReport:
    """Write the report of an existing check run (files first: sending comes after).

    `out` is replaced whole or not at all; ReportWriteError when it cannot be written."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            data = {**collect(conn, run), "link": link}
    finally:
        engine.dispose()
    try:
        with staged_folder(out) as staging:
            charts = _write_files(data, run, staging)
            for name in (SENT_NAME, SENDING_NAME):
                if (out / name).is_file():
                    shutil.copy2(out / name, staging / name)
    except OSError as exc:
        raise ReportWriteError(out, exc) from exc
    return WrittenReport(
        directory=out,
        html_path=out / HTML_NAME,
        email_html_path=out / EMAIL_HTML_NAME,
        csv_path=out / CSV_NAME,
        charts=charts,
        subject=subject(data),
        check_run_id=run.id,
    )


def _write_files(data: Mapping[str, Any], run: CheckRun, folder: Path) -> tuple[Chart, ...]:
    """Every file of the report into `folder`, the manifest last (it lists the others)."""
    charts = draw_charts(data, folder)
    (folder / HTML_NAME).write_text(render(data, charts, email=False), encoding="utf-8")
    (folder / EMAIL_HTML_NAME).write_text(render(data, charts, email=True), encoding="utf-8")
    write_csv(folder / CSV_NAME, data["flags"])
    files = []
    for name in (HTML_NAME, EMAIL_HTML_NAME, CSV_NAME, *(c.name for c in charts)):
        content = (folder / name).read_bytes()  # as written: what the digest vouches for
        files.append({"name": name, "size": len(content), "sha256": file_digest(content)})
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "subject": subject(data),
        "as_of": run.as_of.isoformat(),
        "source": run.source,
        "check_run_id": run.id,
        "link": data.get("link"),
        "text": plain_text(data),
        "html": EMAIL_HTML_NAME,
        "csv": CSV_NAME,
        "images": [{"file": c.name, "cid": c.cid, "alt": c.alt} for c in charts],
        "files": files,
    }
    (folder / MANIFEST_NAME).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return charts
