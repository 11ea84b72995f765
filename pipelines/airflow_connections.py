"""Credentials for the fetchers, read from Airflow connections.

Secrets live in Airflow (its secrets backend or ``AIRFLOW_CONN_<ID>`` environment
variables), never in config/sources.yaml; this module turns a connection into the plain
objects `pipelines.fetch` takes, so the fetchers never import Airflow. Airflow and paramiko
are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.fetch import FetchError

if TYPE_CHECKING:
    from pipelines.sftp_source import SftpCredentials


def _text(extras: Mapping[str, Any], name: str, *, strip: bool = True) -> str | None:
    """An extra as text; None when absent or blank."""
    value = extras.get(name)
    if value is None or not str(value).strip():
        return None
    return str(value).strip() if strip else str(value)


def sftp_credentials_from_connection(conn_id: str) -> SftpCredentials:
    """The SFTP credentials of Airflow connection `conn_id` (``snapshot.conn_id``).

    login and password are used; host and port are not (the ``sftp://`` location has
    them). Extras, named as the Airflow SFTP/SSH provider names them: ``host_key``
    (required: the server's public key, "keytype base64"), ``key_file`` or
    ``private_key`` (with ``private_key_passphrase``), and ``timeout`` (seconds; the
    provider's ``conn_timeout`` is read too). ``no_host_key_check`` is never honoured.
    """
    from airflow.sdk import BaseHook

    from pipelines.sftp_source import SftpCredentials

    connection = BaseHook.get_connection(conn_id)
    extras: Mapping[str, Any] = connection.extra_dejson or {}
    where = f"Airflow connection {conn_id!r}"
    if not connection.login:
        raise FetchError(f"{where}: no login for the SFTP server")
    host_key = _text(extras, "host_key")
    if host_key is None:
        raise FetchError(
            f"{where}: no host_key extra; the SFTP server's key must be pinned: add the "
            "'keytype base64' part of `ssh-keyscan -p PORT HOST` (docs/sftp-sources.md)"
        )
    key_file, private_key = _text(extras, "key_file"), _text(extras, "private_key", strip=False)
    if key_file and private_key:
        raise FetchError(f"{where}: give key_file or private_key, not both")
    raw_timeout = _text(extras, "timeout") or _text(extras, "conn_timeout")
    try:
        timeout = float(raw_timeout) if raw_timeout else None
    except ValueError as exc:
        raise FetchError(f"{where}: timeout {raw_timeout!r} is not a number of seconds") from exc
    if timeout is not None and timeout <= 0:
        raise FetchError(f"{where}: timeout must be positive, not {raw_timeout!r}")
    return SftpCredentials(
        username=connection.login,
        password=connection.password or None,
        private_key=private_key,
        key_file=key_file,
        private_key_passphrase=_text(extras, "private_key_passphrase"),
        host_key=host_key,
        timeout=timeout,
    )


def http_headers(conn_id: str | None) -> dict[str, str] | None:
    """Basic-auth headers from an Airflow connection (login/password), when one is named.

    Credentials stay in Airflow's secrets (or ``AIRFLOW_CONN_<ID>`` environment variables),
    never in config/sources.yaml.
    """
    if not conn_id:
        return None
    import base64

    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    headers: dict[str, str] = {}
    if connection.login:
        token = f"{connection.login}:{connection.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    return headers
