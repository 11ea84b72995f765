"""The repository's airflow.cfg only sets options Airflow 3.3 knows.

Airflow ignores an unknown option without a word: `[webserver] default_ui_timezone` (an
Airflow 2 option) sat in this file while every time in the UI showed in UTC. The check is
against the configuration's own description (the options Airflow reads, with their
sections), so it follows Airflow upgrades by itself.
"""

from __future__ import annotations

import configparser
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _set_options() -> list[tuple[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PROJECT_ROOT / "airflow.cfg", encoding="utf-8")
    return [(section, option) for section in parser.sections() for option in parser[section]]


def test_every_option_of_airflow_cfg_is_one_airflow_reads() -> None:
    from airflow.configuration import conf

    known = {
        section: set(data.get("options", {}))
        for section, data in conf.configuration_description.items()
    }
    options = _set_options()
    assert len(options) > 10  # the file was read
    unknown = [f"[{s}] {o}" for s, o in options if o not in known.get(s, set())]
    assert unknown == []


def test_the_configured_time_zone_is_europe_paris() -> None:
    from airflow.configuration import conf

    assert conf.get("core", "default_timezone") == "Europe/Paris"
    assert ("webserver", "default_ui_timezone") not in _set_options()
