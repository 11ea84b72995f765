"""Keyed pseudonyms for candidate identifiers (HMAC-SHA256).

Job-seeker numbers and local identifiers are personal data (DOMAIN.md); they are replaced
at ingest, before anything is written or logged, by HMAC-SHA256 under a secret key. The
same key gives the same pseudonym across files and runs, so enrolments from the training
plan and from appointment lists meet; without the key nobody can recompute them from a
list of job-seeker numbers (which a plain hash would allow: the number space is small).

The key comes from `KAIROS_PSEUDONYM_KEY`, else from the password of the Airflow
connection `kairos_pseudonym` when Airflow is installed. A missing key is an error: a
default key would silently turn pseudonyms into reversible hashes.
"""

from __future__ import annotations

import hmac
import importlib.util

from core import settings

ENV_VAR = "KAIROS_PSEUDONYM_KEY"
AIRFLOW_CONN_ID = "kairos_pseudonym"
MIN_KEY_BYTES = 16
PSEUDONYM_VERSION = "v1"


class PseudonymKeyError(Exception):
    """No usable pseudonymisation key (absent or too short)."""


def _airflow_connection_password() -> str | None:
    """The password of the Airflow connection, or None (Airflow absent or no connection).

    Airflow is imported here, lazily: importing it is slow and configures logging, and
    the CLI and tests must not pay for that when the environment variable is set.
    """
    if importlib.util.find_spec("airflow") is None:
        return None
    try:
        try:
            from airflow.sdk import BaseHook
        except ImportError:  # Airflow 2
            from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]
        password = BaseHook.get_connection(AIRFLOW_CONN_ID).password
    except Exception:  # no connection, no metadata DB, …: the key is simply not there
        return None
    return str(password) if password else None


def load_key(explicit: bytes | None = None) -> bytes:
    """The pseudonymisation key: `explicit`, else the environment, else Airflow."""
    if explicit is not None:
        key = explicit
        origin = "the pseudonym_key argument"
    else:
        value = settings.get(ENV_VAR)
        origin = f"${ENV_VAR}"
        if not value:
            value = _airflow_connection_password()
            origin = f"the Airflow connection '{AIRFLOW_CONN_ID}'"
        if not value:
            raise PseudonymKeyError(
                f"no pseudonymisation key: set {ENV_VAR} (at least {MIN_KEY_BYTES} bytes) "
                f"or the password of the Airflow connection '{AIRFLOW_CONN_ID}'"
            )
        key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"the key from {origin} is shorter than {MIN_KEY_BYTES} bytes")
    return key


class Pseudonymiser:
    """Turns identifiers into stable keyed pseudonyms; never keeps the clear value."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:  # never show the key in tracebacks or logs
        return "Pseudonymiser(<key hidden>)"

    def pseudonym(self, kind: str, identifier: str) -> str | None:
        """`kind` separates identifier spaces (a local id equal to a national one must not
        collide); identifiers are compared upper-cased without blanks."""
        normalised = "".join(identifier.split()).upper()
        if not normalised:
            return None
        message = f"kairos-candidate|{PSEUDONYM_VERSION}|{kind}|{normalised}".encode()
        # hmac.digest: the one-shot C path, the same value as hmac.new(...).digest().
        digest = hmac.digest(self._key, message, "sha256").hex()
        return f"ps1_{digest[:40]}"
