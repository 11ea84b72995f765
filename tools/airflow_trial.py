"""Airflow trial and scheduler check (`make airflow`, `make airflow-check`; docs/deployment.md).

``run``   prepares the sample sources (var/sources/<source>/offres.xml, generated), starts a
          loopback mail sink that writes every e-mail to var/airflow/mail.log, prints the UI
          address and where the admin password is, then runs ``airflow standalone`` with
          AIRFLOW_HOME=var/airflow and AIRFLOW_CONFIG=airflow.cfg (Ctrl-C stops everything).

``check`` does the same in a scratch home (var/airflow-check, its own project database and
          landing zone, port 8093, mail sink 8026), then proves the scheduler runs the DAGs:
          the nightly sync is unpaused and triggered, the scheduler runs it to success, its
          asset event makes the scheduler start the Region report, whose e-mails reach the
          mail sink; then two backfills are created through the REST API with the body the
          UI's dialog sends: one night of every source without conf (nothing may be
          e-mailed, the plan must say why), two nights of one source with the override's
          conf (e-mailed). Prints a transcript; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SOURCES = ("smf-normandie", "sigma-occitanie")
PARIS = ZoneInfo("Europe/Paris")
MAIL_MARKER = "---------- MESSAGE FOLLOWS ----------"  # aiosmtpd's Debugging handler


def log(message: str) -> None:
    stamp = datetime.datetime.now(tz=PARIS).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def environment(home: Path, *, port: int, smtp_port: int, project_var: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # `airflow standalone` starts its components as `airflow …` from the PATH.
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "KAIROS_PROJECT_ROOT": str(ROOT),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "KAIROS_SMTP_HOST": env.get("KAIROS_SMTP_HOST", "127.0.0.1"),
            "KAIROS_SMTP_PORT": env.get("KAIROS_SMTP_PORT", str(smtp_port)),
            "KAIROS_ALERT_TO": env.get("KAIROS_ALERT_TO", "exploitation@example.org"),
        }
    )
    # All components must sign and verify task tokens with the same secret; without one,
    # each generates its own and the scheduler's tasks are refused ("Invalid auth token").
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        import secrets

        secret_file.write_text(secrets.token_urlsafe(64), encoding="ascii")
        secret_file.chmod(0o600)
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secret_file.read_text(encoding="ascii"))
    if project_var != ROOT / "var":
        # The check keeps its data apart from the trial's.
        env["KAIROS_DATABASE_URL"] = f"sqlite:///{project_var / 'kairos.sqlite'}"
        env["KAIROS_LANDING_ZONE"] = str(project_var / "landing")
        env["KAIROS_REPORTS_DIR"] = str(project_var / "reports")
    return env


def prepare_samples(today: datetime.date, *, force: bool = False) -> None:
    """One generated snapshot per configured sample source (the CARIF drop folder)."""
    sys.path.insert(0, str(ROOT))
    from samples.generator import write_offers

    versions = {"smf-normandie": "2.2", "sigma-occitanie": "2.3"}
    for index, source in enumerate(SOURCES):
        target = ROOT / "var" / "sources" / source / "offres.xml"
        if target.exists() and not force:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        stats = write_offers(
            target,
            formations=60,
            seed=index + 1,
            lheo_version=versions[source],
            reference_date=today,
        )
        log(f"sample source {source}: {target} ({stats.sessions} sessions)")


def start_mail_sink(port: int, logfile: Path) -> subprocess.Popen[bytes]:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    out = logfile.open("ab")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"127.0.0.1:{port} is already in use (another mail sink?)")
    process = subprocess.Popen(
        [str(BIN / "python"), "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    _wait_port(port, 15)
    return process


def _wait_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


def banner(home: Path, port: int, mail_log: Path) -> None:
    passwords = home / "simple_auth_manager_passwords.json.generated"
    print(
        "\n"
        f"  Airflow UI:      http://127.0.0.1:{port}\n"
        f"  login:           admin  (password: see {passwords},\n"
        "                   written by `airflow standalone` at its first start; it is also\n"
        "                   printed in the standalone banner below)\n"
        f"  AIRFLOW_HOME:    {home}\n"
        f"  e-mails:         {mail_log} (loopback mail sink)\n"
        "  DAGs:            kairos_offer_sync (02:00 Europe/Paris), kairos_region_report\n"
        "                   (on the kairos://sessions asset); both start paused: unpause them.\n"
        "                   Unpausing the sync starts tonight's run at once when 02:00 Paris\n"
        "                   has passed (Airflow's catch-up of the latest night; harmless).\n",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    home = ROOT / "var" / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    prepare_samples(datetime.datetime.now(tz=PARIS).date())
    env = environment(home, port=args.port, smtp_port=args.smtp_port, project_var=ROOT / "var")
    sink = start_mail_sink(args.smtp_port, home / "mail.log")
    banner(home, args.port, home / "mail.log")
    try:
        return subprocess.call([str(BIN / "airflow"), "standalone"], env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        sink.terminate()
        sink.wait(10)


# --------------------------------------------------------------------------- check


def airflow(env: Mapping[str, str], *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(BIN / "airflow"), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def runs(env: Mapping[str, str], dag_id: str) -> list[dict[str, str]]:
    out = airflow(env, "dags", "list-runs", dag_id, "-o", "json", check=False)
    # Airflow may print warnings before the JSON: take the line that is the JSON array.
    lines = [line for line in out.splitlines() if line.startswith(("[{", "[]"))]
    return list(json.loads(lines[-1])) if lines else []


def wait_runs(
    env: Mapping[str, str], dag_id: str, count: int, timeout: float
) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = runs(env, dag_id)
        finished = [r for r in current if r["state"] in ("success", "failed")]
        if len(finished) >= count and all(r["state"] not in ("running", "queued") for r in current):
            return current
        time.sleep(5)
    raise SystemExit(f"{dag_id}: {count} finished run(s) not seen in {timeout:.0f} s: {current}")


def archive(env: Mapping[str, str], source: str, day: datetime.date, file: Path) -> None:
    """A past night's file into the check's landing zone, as an operator would do it."""
    subprocess.run(
        [str(BIN / "kairos-sync"), "archive", str(file), "--source", source, "--date", str(day)],
        env=dict(env),
        check=True,
        capture_output=True,
        timeout=60,
    )


def count_mails(mail_log: Path) -> int:
    return mail_log.read_text(encoding="utf-8", errors="replace").count(MAIL_MARKER)


def api_token(home: Path, port: int) -> str:
    """A JWT for the REST API, with the admin password `airflow standalone` generated."""
    passwords = json.loads(
        (home / "simple_auth_manager_passwords.json.generated").read_text(encoding="utf-8")
    )
    body = json.dumps({"username": "admin", "password": passwords["admin"]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/auth/token",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback
        return str(json.loads(response.read())["access_token"])


def ui_backfill(
    port: int, token: str, days: list[datetime.date], *, conf: Mapping[str, object] | None
) -> dict[str, object]:
    """POST /api/v2/backfills with the body Airflow 3.3.2's backfill dialog sends:
    `dag_run_conf` is the form's values when "Override parameters" is ticked, else null."""
    # The dialog's date pickers: from 00:00 of the first day to 23:59:59.999 of the last, in
    # the browser's time zone (Paris), sent in UTC with milliseconds.
    start = datetime.datetime.combine(days[0], datetime.time(0), tzinfo=PARIS)
    end = datetime.datetime.combine(days[-1], datetime.time(23, 59, 59, 999000), tzinfo=PARIS)
    body = {
        "dag_id": "kairos_offer_sync",
        "from_date": _utc_ms(start),
        "to_date": _utc_ms(end),
        "max_active_runs": 1,
        "reprocess_behavior": "none",
        "run_backwards": False,
        "run_on_latest_version": True,
        "dag_run_conf": dict(conf) if conf is not None else None,
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/backfills",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # loopback
        return dict(json.loads(response.read()))


def wait_backfill(port: int, token: str, backfill_id: object, timeout: float) -> None:
    """Until the scheduler marks the backfill completed: Airflow refuses a second backfill
    of a DAG while one is running (HTTP 409), even once its runs have all ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/backfills/{backfill_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback
            if json.loads(response.read()).get("completed_at"):
                return
        time.sleep(3)
    raise SystemExit(f"backfill {backfill_id} not completed in {timeout:.0f} s")


def _utc_ms(moment: datetime.datetime) -> str:
    """`Date.toISOString()`: UTC, milliseconds, a Z."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_lines(home: Path, run_type: str) -> list[str]:
    """The plan task's first line in the task logs of the runs of `run_type`."""
    found = []
    for path in sorted((home / "logs").rglob("*.log")):
        if "task_id=plan" not in str(path):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if f"plan of this {run_type} run" in line:
                try:  # task logs are JSON lines: keep the message
                    found.append(str(json.loads(line)["event"]))
                except (ValueError, KeyError, TypeError):
                    found.append(line.strip()[:400])
    return found


def _night(day: datetime.date) -> str:
    """02:00 in Paris on `day`, with its UTC offset (CET or CEST)."""
    return datetime.datetime(day.year, day.month, day.day, 2, tzinfo=PARIS).isoformat()


def check(args: argparse.Namespace) -> int:
    home = ROOT / "var" / "airflow-check"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    today = datetime.datetime.now(tz=PARIS).date()
    prepare_samples(today)
    env = environment(home, port=args.port, smtp_port=args.smtp_port, project_var=home)
    mail_log = home / "mail.log"
    sink = start_mail_sink(args.smtp_port, mail_log)
    standalone_log = (home / "standalone.log").open("wb")
    log(f"airflow standalone (AIRFLOW_HOME={home}, port {args.port})")
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"],
        env=env,
        stdout=standalone_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that stopping it stops its scheduler, processor, …
    )
    try:
        _wait_port(args.port, 240)
        log("API server is up; waiting for the DAG processor to register the DAGs")
        deadline = time.monotonic() + 240
        while "kairos_offer_sync" not in airflow(env, "dags", "list", check=False):
            if time.monotonic() > deadline:
                raise SystemExit("the DAGs were not registered in 240 s")
            time.sleep(5)
        errors = airflow(env, "dags", "list-import-errors", check=False).splitlines()
        log(f"import errors: {errors[-1] if errors else 'none'}")
        for dag_id in ("kairos_offer_sync", "kairos_region_report"):
            airflow(env, "dags", "unpause", dag_id)
        upcoming = airflow(env, "dags", "next-execution", "kairos_offer_sync").split()[-1]
        log(f"next scheduled run: {upcoming}")

        # Unpausing lets the scheduler create tonight's scheduled run if 02:00 has passed
        # today (catchup=False keeps only the latest); the manual trigger adds one more.
        log("trigger kairos_offer_sync; the scheduler runs it (LocalExecutor)")
        airflow(env, "dags", "trigger", "kairos_offer_sync")
        time.sleep(5)
        expected = len(runs(env, "kairos_offer_sync"))
        sync_runs = wait_runs(env, "kairos_offer_sync", expected, 900)
        log(f"kairos_offer_sync: {[(r['run_id'], r['state']) for r in sync_runs]}")
        report_runs = wait_runs(env, "kairos_region_report", 1, 600)
        report_runs = wait_runs(env, "kairos_region_report", len(report_runs), 600)
        log(f"kairos_region_report: {[(r['run_id'], r['state']) for r in report_runs]}")
        time.sleep(2)
        mails = count_mails(mail_log)
        log(f"e-mails received by the mail sink: {mails}")

        # Backfills the way the UI's dialog creates them (REST API, same body). Without
        # "Override parameters" ticked the dialog sends no conf: every source, and the
        # plan must not send the report. Ticked, its conf selects one source and sends.
        token = api_token(home, args.port)
        quiet_night = today - datetime.timedelta(days=3)
        for source in SOURCES:
            archive(env, source, quiet_night, ROOT / "var" / "sources" / source / "offres.xml")
        log(f"backfill {quiet_night} through the REST API with no conf (override not ticked)")
        first = ui_backfill(args.port, token, [quiet_night], conf=None)
        expected += 1
        all_runs = wait_runs(env, "kairos_offer_sync", expected, 900)
        wait_backfill(args.port, token, first["id"], 300)
        report_runs = wait_runs(env, "kairos_region_report", len(report_runs) + 1, 600)
        time.sleep(2)
        quiet_mails = count_mails(mail_log)
        plans = plan_lines(home, "backfill")
        log(f"  plan: {plans[-1] if plans else 'NOT LOGGED'}")
        log(f"  e-mails after it: {quiet_mails} (before: {mails})")

        days = [today - datetime.timedelta(days=n) for n in (2, 1)]
        source_file = ROOT / "var" / "sources" / "smf-normandie" / "offres.xml"
        for day in days:
            archive(env, "smf-normandie", day, source_file)
        # Ticked, the dialog sends every field of the form (defaults included).
        conf = {
            "sources": ["smf-normandie"],
            "as_of": None,
            "dry_run": False,
            "send_email": True,
            "snapshot_file": None,
        }
        log(f"backfill {days[0]} → {days[-1]} through the REST API with the override's conf")
        ui_backfill(args.port, token, days, conf=conf)
        all_runs = wait_runs(env, "kairos_offer_sync", expected + len(days), 900)
        report_runs = wait_runs(env, "kairos_region_report", len(report_runs) + 1, 600)
        time.sleep(2)
        final_mails = count_mails(mail_log)
        log(f"  e-mails after it: {final_mails}")
        for r in sorted(all_runs, key=lambda r: r["logical_date"] or ""):
            log(f"  {r['run_id']:60} {r['state']:8} logical_date={r['logical_date']}")
        for r in report_runs:
            log(f"  {r['run_id']:60} {r['state']:8} (report)")
        states = [r["state"] for r in all_runs] + [r["state"] for r in report_runs]
        checks = {
            "every run succeeded": all(s == "success" for s in states),
            "the first night's reports were e-mailed": mails >= 2,
            "a backfill without conf e-mailed nothing": quiet_mails == mails,
            "its plan was logged with the reason": bool(plans)
            and "backfill without send_email" in plans[-1],
            "a backfill with send_email in its conf e-mailed": final_mails > quiet_mails,
        }
        for what, passed in checks.items():
            log(f"  {'ok ' if passed else 'NOT'} {what}")
        ok = all(checks.values())
        log("CHECK PASSED" if ok else "CHECK FAILED (see var/airflow-check/standalone.log)")
        return 0 if ok else 1
    finally:
        stop_group(standalone)
        sink.terminate()
        sink.wait(10)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop `airflow standalone` and every component it started (its process group):
    SIGINT, then SIGTERM (the DAG processor ignores SIGINT), then SIGKILL; and wait until
    no process of the group is left, so that the next check finds its ports free."""
    for sig, seconds in ((signal.SIGINT, 20), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so that it does not linger as a zombie
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def main() -> int:
    # SIGTERM (a timeout, a CI cancel) must run the `finally` blocks that stop the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start the trial (airflow standalone)")
    run_parser.add_argument("--port", type=int, default=8080)
    run_parser.add_argument("--smtp-port", type=int, default=8025)
    check_parser = sub.add_parser("check", help="prove the scheduler runs the DAGs")
    check_parser.add_argument("--port", type=int, default=8093)
    check_parser.add_argument("--smtp-port", type=int, default=8026)
    args = parser.parse_args()
    return run(args) if args.command == "run" else check(args)


if __name__ == "__main__":
    sys.exit(main())
