"""The "exports" step of the benchmark (`tools/bench.py`): France Travail training plans at
real size (docs/performance.md "KAIROS / France Travail exports at real size").

For each size (lines) it loads a generated LHEO offer into a fresh PostgreSQL database so
that there are KAIROS sessions to link to (≈ 15 plan lines per session), writes a
training-plan export of that many lines (the DOMAIN.md header, fake people, Luhn-valid
SIRETs; 70 % of the lines on a loaded session by its dispensateur, 10 % by the
mandataire's SIRET, 20 % on unknown sessions, 0.3 % with an impossible date), then times,
each in its own process with the peak RSS of its process tree:

1. reading only: `open_export(...).records()` to the end (the streamed reader alone);
2. `kairos-sync ingest-kairos FILE --kind training-plans` (every line new);
3. the same file again (nothing changes: `noop`).

`--skip ingest` leaves steps 2 and 3 out (the reader's figures alone).

With `--profile-exports`, step 2 also runs under cProfile on a copy of the database as it
was before step 2 (`CREATE DATABASE … TEMPLATE`), and the profile is summarised: where an
ingestion's time goes (reading, pseudonymisation, value parsing, SQL round trips).
"""

from __future__ import annotations

import csv
import os
import pstats
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

from bench import (
    BIN,
    ROOT,
    StepResult,
    drop_postgres,
    fresh_postgres,
    load_command,
    run_measured,
    sessions_per_formation,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from stdnum import luhn
from stdnum.fr import siret as stdnum_siret

LINES_PER_SESSION = 15
KEY = "bench-pseudonym-key-not-a-secret-0123456789"
HEADER = (
    "c_nomcorrespondance", "c_prenomcorrespondance", "c_adresseemail", "c_telephone1",
    "c_telephone2", "c_validitemail_id", "dn_individu_national", "dn_session_id",
    "c_individulocal", "dc_formation_id", "dc_lblformation", "dd_datedebutplanformation",
    "dd_datefinplanformation", "dc_organisme_id", "dc_cp_lieuformation",
    "dc_insee_lieuformation", "dc_ville_lieuformation", "dc_formacode_ppal_id",
    "dc_formacode_secondaire1_id", "dc_formacode_secondaire2_id", "dc_formacode_secondaire3_id",
    "dc_formacode_secondaire4_id", "dn_certifinfo_1_id", "dn_certifinfo_2_id",
    "dn_certifinfo_3_id", "dn_certifinfo_4_id", "dn_certifinfo_5_id", "dc_siret",
    "dc_lblorganisme", "dc_raisonsociale", "departement", "dc_numeroicsession",
    "dc_numeroicaction", "liste_financeur", "c_dispositifformation", "dc_siretformateur",
    "dc_lblorganismeformateur", "dc_raisonsocialeformateur", "dc_cofinanceuropca",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Lefèvre", "Benaïssa", "Nguyễn", "Le Goff", "Ferreira",
    "Traoré", "Öztürk", "Da Silva", "Müller", "Rakotomalala", "Çelik", "Hoareau", "Moreau",
)  # fmt: skip
FIRST_NAMES = (
    "Léa", "Karim", "Maëlle", "João", "Thi Hoa", "Françoise", "Aïssata", "Emre", "Inês",
    "Jérôme", "Noémie", "Zoé", "Cédric", "Hélène", "Grégoire", "Sandrine",
)  # fmt: skip
LABELS = (
    "Titre professionnel gestionnaire comptable et fiscal",
    "CAP accompagnant éducatif petite enfance",
    "Titre pro | Agent de restauration",  # quoted in a `|` file
    "Préparation opérationnelle à l'emploi — logistique",
)
DISPOSITIFS = ("PRF", "AIF", "POEC", "CPF")
FINANCEURS = ("10;13", "10", "2;10", "13")


def valid_siret(number: int) -> str:
    """A SIRET (Luhn-valid SIREN and SIRET) made from `number`."""
    siren = f"{number % 10**8:08d}"
    siren += luhn.calc_check_digit(siren)
    siret = siren + f"{number // 10**8 % 10**4:04d}"
    return siret + luhn.calc_check_digit(siret)


def loaded_sessions(url: str) -> list[tuple[str, str, str, str]]:
    """(CARIF session, action, dispensateur SIRET, mandataire SIRET) of the open sessions."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT carif_session_numero, carif_action_numero, dispensateur_siret, "
                    "mandataire_siret FROM kairos_session WHERE closed_at IS NULL ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    return [
        (str(r[0]), str(r[1] or ""), str(r[2]), str(r[3] or r[2]))
        for r in rows
        if r[0] and stdnum_siret.is_valid(r[2] or "")
    ]


def plan_rows(lines: int, sessions: Sequence[tuple[str, str, str, str]]) -> Iterator[list[str]]:
    rng = random.Random(2026)  # test data, not crypto
    origin = date(2026, 1, 5)
    for n in range(lines):
        person = n if rng.random() < 0.95 or n == 0 else rng.randrange(n)  # some come twice
        last = LAST_NAMES[person % len(LAST_NAMES)]
        first = FIRST_NAMES[person // len(LAST_NAMES) % len(FIRST_NAMES)]
        draw = rng.random()
        carif, action, dispensateur, mandataire = sessions[rng.randrange(len(sessions))]
        formateur, responsable = dispensateur, mandataire
        if 0.70 <= draw < 0.80:  # guichet unique: only the mandataire's SIRET has a session
            formateur, responsable = valid_siret(rng.randrange(10**12)), dispensateur
        elif draw >= 0.80:  # a session no LHEO offer describes
            carif = f"SE_9{rng.randrange(10**7):07d}"
        start = origin + timedelta(days=rng.randrange(540))
        end = start + timedelta(days=rng.randrange(30, 300))
        start_text = "31/02/2026" if rng.random() < 0.003 else start.strftime("%d/%m/%Y")
        yield [
            last, first, f"{first}.{last}{person}@exemple.fr".lower().replace(" ", ""),
            f"06{person % 10**8:08d}", "", "1", f"{10**10 + person:011d}",
            str(700000 + rng.randrange(10**5)), f"{person % 10**7:07d}{chr(65 + person % 26)}",
            f"FOR_{rng.randrange(10**4)}", LABELS[rng.randrange(len(LABELS))], start_text,
            end.strftime("%d/%m/%Y"), f"ORG_{rng.randrange(10**3)}", "14000", "14118", "Caen",
            "32663", "", "", "", "", "", "", "", "", "", responsable, "GIP", "GIP MANDATAIRE",
            "14", carif, action, FINANCEURS[rng.randrange(len(FINANCEURS))],
            DISPOSITIFS[rng.randrange(len(DISPOSITIFS))], formateur, "FORMAPRO",
            "FORMAPRO NORMANDIE", "N",
        ]  # fmt: skip


def write_plans(file: Path, lines: int, sessions: Sequence[tuple[str, str, str, str]]) -> None:
    partial = file.with_name(file.name + ".part")
    with partial.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="|", lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(plan_rows(lines, sessions))
    partial.replace(file)


READ_ONLY = """
import sys
from pathlib import Path
from pipelines.kairos_exports import contracts
from pipelines.kairos_exports.reading import Record, open_export
table = open_export(Path(sys.argv[1]), required=contracts.REQUIRED_TRAINING_PLANS)
items = bad = 0
for item in table.records():
    items += 1
    bad += not isinstance(item, Record)
print(f"records {items} bad {bad}")
"""


def ingest_command(file: Path, db: str) -> list[str]:
    kairos_sync = str(BIN / "kairos-sync")
    return [kairos_sync, "ingest-kairos", str(file), "--kind", "training-plans", "--db", db]


def counts(stdout: str) -> dict[str, int]:
    """The counts `kairos-sync ingest-kairos` prints, one `name value` per line."""
    found: dict[str, int] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def copy_database(pg_admin: str, template: str) -> str:
    """A new database with `template`'s content (PostgreSQL file-level copy)."""
    engine = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    name = f"{make_url(template).database}_copy"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template).database}"'))
    engine.dispose()
    return make_url(template).set(database=name).render_as_string(hide_password=False)


def bench_exports(
    lines: int,
    workdir: Path,
    pg_admin: str,
    keep_files: bool,
    profile: bool,
    skip: frozenset[str] = frozenset(),
) -> list[StepResult]:
    env = {**os.environ, "KAIROS_PSEUDONYM_KEY": KEY}
    results: list[StepResult] = []
    pg = fresh_postgres(pg_admin)
    offers = workdir / f"offers-exports-{lines}.xml"
    file = workdir / f"training-plans-{lines}.csv"
    copies: list[str] = []
    try:
        from samples.generator import write_offers

        per_formation = sessions_per_formation("2.3", workdir)
        formations = max(1, round(lines / LINES_PER_SESSION / per_formation))
        write_offers(offers, formations=formations, seed=2026, lheo_version="2.3")
        run_measured([str(BIN / "kairos-sync"), "migrate", "--db", pg])
        run_measured(load_command(offers, pg, "2.3"))
        sessions = loaded_sessions(pg)
        if keep_files and file.exists():
            print(f"# reusing {file.name}", flush=True)
        else:
            started = time.perf_counter()
            write_plans(file, lines, sessions)
            print(f"# generated {file.name} in {time.perf_counter() - started:.0f} s", flush=True)
        file_mb = file.stat().st_size / 1e6
        print(f"# exports {lines}: {len(sessions)} sessions, {file_mb:.0f} MB", flush=True)

        def record(step: str, seconds: float, peak: float, rows: int | None, detail: str) -> None:
            result = StepResult(step, lines, "ft", seconds, peak, file_mb, lines, rows)
            result.detail = detail
            results.append(result)
            print(
                f"  {step:<26} {seconds:8.1f} s  {result.mb_per_s:6.1f} MB/s  "
                f"{lines / seconds:9.0f} lines/s  peak {peak:6.0f} MB  rows {rows}  ({detail})",
                flush=True,
            )

        seconds, peak, out = run_measured([str(BIN / "python"), "-c", READ_ONLY, str(file)])
        record("read only (streamed)", seconds, peak, None, out.strip())
        if "ingest" in skip:  # the reader alone (the ingestion's figures need hours at 1 M)
            return results
        if profile:
            copies.append(copy_database(pg_admin, pg))
        for step in ("ingest training plans", "re-ingest unchanged"):
            seconds, peak, out = run_measured(ingest_command(file, pg), env)
            found = counts(out)
            rows = found.get("inserted", 0) + found.get("updated", 0) + found.get("events", 0)
            detail = ", ".join(
                f"{k} {found.get(k, 0)}"
                for k in ("lines_read", "inserted", "linked", "unmatched", "quarantined")
            )
            record(step, seconds, peak, rows, detail)
        if profile:
            target = workdir / f"profile-exports-{lines}"
            command = [str(BIN / "python"), "-m", "cProfile", "-o", f"{target}.prof"]
            seconds, peak, _ = run_measured(command + ingest_command(file, copies[0]), env)
            record("ingest under cProfile", seconds, peak, None, f"{target}.txt")
            summary = summarise_profile(Path(f"{target}.prof"), lines)
            Path(f"{target}.txt").write_text(summary)
            print(summary, flush=True)
    finally:
        for copy in copies:
            drop_postgres(pg_admin, copy)
        drop_postgres(pg_admin, pg)
        offers.unlink(missing_ok=True)
        if not keep_files:
            file.unlink(missing_ok=True)
    return results


# (label, file name ending, function name): cumulative time of these entry points.
KEY_FUNCTIONS = (
    ("whole ingestion", "kairos_exports/ingest.py", "ingest_export"),
    ("reading: records() incl. csv and decoding", "kairos_exports/reading.py", "records"),
    ("  physical lines (readline)", "kairos_exports/lines.py", "__next__"),
    ("parsing a plan line (values, SIRETs, dates)", "kairos_exports/training_plans.py", "_parse"),
    ("  pseudonymisation (HMAC-SHA256)", "kairos_exports/pseudonym.py", "pseudonym"),
    ("link: sessions of a batch (one query)", "kairos_exports/run.py", "prefetch_sessions"),
    ("enrolments: stored rows of a batch", "kairos_exports/enrolments.py", "_stored"),
    ("enrolments: apply (queue; each 5 000th flushes)", "kairos_exports/enrolments.py", "apply"),
    ("enrolments: ids drawn, rows rendered", "kairos_exports/enrolments.py", "prepare"),
    ("waiting for the writer thread", "kairos_exports/run.py", "wait_writes"),
    ("quarantine rows (batched)", "kairos_exports/run.py", "flush"),
    ("SQLAlchemy Connection.execute", "sqlalchemy/engine/base.py", "execute"),
    ("  psycopg2 cursor.execute (wire + server)", "~", "<method 'execute' of 'psycopg2"),
    ("commit", "sqlalchemy/engine/base.py", "commit"),
)


def summarise_profile(path: Path, lines: int) -> str:
    """Cumulative seconds, calls and µs per plan line of KEY_FUNCTIONS, then the top 25
    functions by own time."""
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    out = [f"cProfile of `ingest-kairos` on {lines} lines (times include cProfile's overhead)"]
    out.append(f"{'entry point':<44} {'cum s':>8} {'calls':>10} {'µs/line':>9}")
    for label, ending, name in KEY_FUNCTIONS:
        # Same-named functions nest (ExportTable.records around _Splitter.records, the
        # commits of a transaction): the outermost, the largest, is the one to show.
        cumulative, calls = 0.0, 0
        for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in table.items():
            if filename.endswith(ending) and function.startswith(name) and ct > cumulative:
                cumulative, calls = ct, nc
        out.append(f"{label:<44} {cumulative:8.1f} {calls:10} {cumulative / lines * 1e6:9.0f}")
    out.append("")
    out.append("top 25 by own time (tottime):")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])[:25]
    for (filename, line, function), (_cc, nc, tt, ct, _callers) in ranked:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        out.append(f"  {tt:7.1f} s own {ct:7.1f} s cum {nc:9} calls  {function} ({where}:{line})")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # a profile summary again: python tools/bench_exports.py FILE.prof N
    sys.stdout.write(summarise_profile(Path(sys.argv[1]), int(sys.argv[2])))
