"""Screenshots of the Airflow 3.3 UI for docs/deployment.md, taken in headless Chromium.

Starts a scratch trial like `tools/airflow_trial.py check` (AIRFLOW_HOME var/airflow-screens,
wiped first; UI port 8094, mail sink 8027) whose sources file adds `broken-source`, a
source whose snapshot folder does not exist, so that a triggered night fails. Then drives
Debian's Chromium (/usr/bin/chromium, /usr/bin/chromedriver; time zone Europe/Paris) with
Selenium, logs in as admin and writes into --out (default docs/images):

  airflow-dags.png             the DAG list
  airflow-trigger-form.png     kairos_offer_sync's Trigger dialog, its params form open
  airflow-backfill-dialog.png  the Backfill dialog for the two past nights
  airflow-failed-night.png     the failed run, its failed source.fetch [broken-source]

Airflow standalone and the mail sink are always stopped at the end.

    .venv/bin/python tools/airflow_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import yaml
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
import airflow_trial as trial  # tools/ is not a package

ROOT = trial.ROOT
HOME = ROOT / "var" / "airflow-screens"
PORT, SMTP_PORT = 8094, 8027
URL = f"http://127.0.0.1:{PORT}"
DAG_ID = "kairos_offer_sync"
BROKEN = "broken-source"
log = trial.log


# --------------------------------------------------------------------------- scratch trial


def sources_file(home: Path) -> Path:
    """config/sources.yaml plus a source whose snapshot folder does not exist."""
    document = yaml.safe_load((ROOT / "config" / "sources.yaml").read_text(encoding="utf-8"))
    document["sources"][BROKEN] = {
        "report": {"recipients": ["qualite-offre@example.org"]},
        "snapshot": {"location": str(home / BROKEN)},  # never created: the fetch fails
    }
    target = home / "sources.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


@contextlib.contextmanager
def scratch_trial() -> Iterator[dict[str, str]]:
    """`airflow standalone` on a fresh var/airflow-screens; stopped whatever happens."""
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    trial.prepare_samples(datetime.datetime.now(tz=trial.PARIS).date())
    env = trial.environment(HOME, port=PORT, smtp_port=SMTP_PORT, project_var=HOME)
    env["KAIROS_SOURCES_CONFIG"] = str(sources_file(HOME))
    sink = trial.start_mail_sink(SMTP_PORT, HOME / "mail.log")
    log(f"airflow standalone (AIRFLOW_HOME={HOME}, port {PORT})")
    with (HOME / "standalone.log").open("wb") as out:
        standalone = subprocess.Popen(
            [str(trial.BIN / "airflow"), "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        trial._wait_port(PORT, 240)
        deadline = time.monotonic() + 240
        while DAG_ID not in trial.airflow(env, "dags", "list", check=False):
            if time.monotonic() > deadline:
                raise SystemExit("the DAGs were not registered in 240 s")
            time.sleep(5)
        yield env
    finally:
        os.killpg(standalone.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            standalone.wait(15)
        # Airflow 3.3's dag-processor ignores SIGINT and idle LocalExecutor workers may
        # outlive standalone: nothing of the scratch trial is worth waiting for.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(standalone.pid, signal.SIGKILL)
        standalone.wait(10)
        sink.terminate()
        sink.wait(10)
        log("airflow standalone and the mail sink stopped")


# --------------------------------------------------------------------------- browser


def browser() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--window-size=1400,900", "--no-sandbox", "--lang=en-US"):
        options.add_argument(flag)
    # The UI shows dates in the browser's time zone by default.
    service = Service(
        executable_path="/usr/bin/chromedriver", env={**os.environ, "TZ": "Europe/Paris"}
    )
    return webdriver.Chrome(service=service, options=options)


def _visible(driver: WebDriver, by: str, query: str, timeout: float) -> WebElement:
    """The first displayed match (the UI keeps hidden copies of some elements)."""

    def find(_: WebDriver) -> WebElement | bool:
        shown = [e for e in driver.find_elements(by, query) if e.is_displayed()]
        return shown[0] if shown else False

    wait = WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException])
    found = wait.until(find, f"nothing visible matches {query}")
    assert isinstance(found, WebElement)
    return found


def wait_for(driver: WebDriver, css: str, timeout: float = 30) -> WebElement:
    return _visible(driver, By.CSS_SELECTOR, css, timeout)


def wait_text(driver: WebDriver, text: str, timeout: float = 30) -> WebElement:
    xpath = f"//*[contains(normalize-space(text()), {json.dumps(text)})]"
    return _visible(driver, By.XPATH, xpath, timeout)


def shot(driver: WebDriver, out: Path, name: str, *, fit: WebElement | None = None) -> None:
    """Save a PNG after a short settle; `fit` grows the window so that element fits."""
    if fit is not None:
        chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
        bottom = driver.execute_script("return arguments[0].getBoundingClientRect().bottom", fit)
        driver.set_window_size(1400, min(2400, max(900, int(bottom + 40 + chrome))))
    time.sleep(1.5)  # animations, late requests
    driver.save_screenshot(str(out / name))
    driver.set_window_size(1400, 900)
    log(f"wrote {out / name}")


def login(driver: WebDriver) -> None:
    """The simple auth manager's form (Airflow 3.3: /auth/login)."""
    passwords = HOME / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text(encoding="utf-8"))["admin"]
    driver.get(URL)
    wait_for(driver, "input[name=username]").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, "a[href$='/dags']")


def open_trigger_dialog(driver: WebDriver) -> WebElement:
    driver.get(f"{URL}/dags/{DAG_ID}")
    wait_for(driver, "[data-testid=trigger-dag-button]").click()
    return wait_for(driver, "[data-scope=dialog][data-part=content]")


# --------------------------------------------------------------------------- screenshots


def dag_list(driver: WebDriver, out: Path) -> None:
    driver.get(f"{URL}/dags")
    wait_text(driver, "kairos_region_report")
    wait_text(driver, DAG_ID)
    shot(driver, out, "airflow-dags.png")


def trigger_form(driver: WebDriver, out: Path) -> None:
    dialog = open_trigger_dialog(driver)
    wait_text(driver, "Run Parameters")
    wait_for(driver, "input[name=element_snapshot_file]")  # the last field of the form
    shot(driver, out, "airflow-trigger-form.png", fit=dialog)


def backfill_dialog(driver: WebDriver, out: Path) -> None:
    """Backfill the two past nights; the dialog's dry run then counts the runs to create."""
    dialog = open_trigger_dialog(driver)
    wait_for(driver, "label[for$='radio:input:backfill']").click()
    today = datetime.datetime.now(tz=trial.PARIS).date()
    popover = "[data-scope=popover][data-part=content][data-state=open]"
    for index, days_ago in enumerate((2, 1)):  # From (00:00), To (23:59: end of day)
        wait_for(driver, "[data-testid=datetime-input]")
        driver.find_elements(By.CSS_SELECTOR, "[data-testid=datetime-input]")[index].click()
        day = today - datetime.timedelta(days=days_ago)
        field = wait_for(driver, f"{popover} input[placeholder='YYYY/MM/DD']")
        field.send_keys(day.strftime("%Y/%m/%d"), Keys.ESCAPE)
        time.sleep(0.5)
    log(wait_text(driver, "will be triggered").text)
    wait_text(driver, "Override parameters on existing runs")
    shot(driver, out, "airflow-backfill-dialog.png", fit=dialog)


def failed_night(driver: WebDriver, out: Path, env: dict[str, str], run_id: str) -> None:
    """The run's page on its failed source.fetch [broken-source], the grid expanded."""
    out_json = trial.airflow(env, "tasks", "states-for-dag-run", DAG_ID, run_id, "-o", "json")
    states = json.loads([line for line in out_json.splitlines() if line.startswith("[")][-1])
    failed = [s for s in states if s["task_id"] == "source.fetch" and s["state"] == "failed"]
    if not failed:
        raise SystemExit(f"{run_id}: no failed source.fetch in {states}")
    path = f"runs/{quote(run_id, safe='')}/tasks/source.fetch/mapped/{failed[0]['map_index']}"
    driver.get(f"{URL}/dags/{DAG_ID}/{path}")
    wait_for(driver, "[data-testid=expand-all-button]").click()
    wait_text(driver, BROKEN)
    wait_text(driver, "FetchError")
    shot(driver, out, "airflow-failed-night.png")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with scratch_trial() as env:
        trial.airflow(env, "dags", "unpause", DAG_ID)
        triggered = trial.airflow(env, "dags", "trigger", DAG_ID, "-o", "json")
        run_id = json.loads([x for x in triggered.splitlines() if x.startswith("[")][-1])[0][
            "dag_run_id"
        ]
        log(f"triggered {run_id}; its {BROKEN} fetch fails")
        driver = browser()
        try:
            login(driver)
            trigger_form(driver, out)
            backfill_dialog(driver, out)
            # Unpausing also made the scheduler create tonight's run (if 02:00 has passed).
            finished = trial.wait_runs(env, DAG_ID, len(trial.runs(env, DAG_ID)), 600)
            state = next(r["state"] for r in finished if r["run_id"] == run_id)
            log(f"{run_id}: {state}")
            failed_night(driver, out, env, run_id)
            dag_list(driver, out)
        except Exception:
            driver.save_screenshot(str(HOME / "failure.png"))
            (HOME / "failure.html").write_text(driver.page_source, encoding="utf-8")
            log(f"failed on {driver.current_url}: see {HOME / 'failure.png'}")
            raise
        finally:
            driver.quit()
    log(f"done in {time.monotonic() - started:.0f} s")
    if state != "failed":
        log(f"WARNING: {run_id} is {state}, not failed, although {BROKEN}'s fetch failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
