"""`make audit`: the pinned stack of requirements.txt, checked offline and against known
vulnerabilities (docs/security.md).

1. Offline, always: every requirement is pinned with `==`; the project's .venv holds exactly
   those versions; `pip check` finds no broken dependency.
2. Offline vulnerability check (`make audit-offline`): every pin is evaluated against
   config/security/pypa-advisories.json, a compacted snapshot of the PyPA Advisory Database
   (the data behind pip-audit's PyPI service), with OSV semantics: ECOSYSTEM ranges
   (introduced / fixed / last_affected events in PEP 440 order) plus explicit versions.
   Any affected pin exits 4. The snapshot is a stored copy of unknown freshness: the check
   says what it covers, and an empty result only means "nothing known to this snapshot".
3. Online (`make audit`): `pip-audit` (pinned, in its own venv var/audit-venv so that it does
   not enter the runtime stack) on requirements.txt against the OSV database (`-s osv`;
   `-s pypi` with AUDIT_SERVICE=pypi). When the service cannot be reached the target fails
   with exit 3 and says so: an audit that could not run is never reported as clean.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")
UNREACHABLE = ("getaddrinfo", "ConnectionError", "Max retries exceeded", "Temporary failure")
SNAPSHOT = ROOT / "config" / "security" / "pypa-advisories.json"
AFFECTED_EXIT = 4
# Pre-allocation file names of the PyPA database (PYSEC-0000-CVE-…): the database renames them
# to an allocated PYSEC-YYYY-N id, but the stored index kept both from the repository history.
PLACEHOLDER_PREFIX = "PYSEC-0000-"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(requirements: Path) -> tuple[dict[str, str], list[str]]:
    """Pins of a requirements file by normalised name, and the lines that are not `==` pins."""
    pins: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(requirements.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            problems.append(f"{requirements.name}:{number}: not pinned with '==': {line}")
            continue
        pins[_normalise(match.group(1))] = match.group(2)
    return pins, problems


def offline_check(requirements: Path, python: Path) -> list[str]:
    pins, problems = parse_pins(requirements)
    if python.resolve() == Path(sys.executable).resolve():
        installed = {_normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
        for name, version in sorted(pins.items()):
            if installed.get(name) != version:
                problems.append(f"{name}: pinned {version}, installed {installed.get(name)}")
    check = subprocess.run(
        [str(python), "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        problems.append(f"pip check: {check.stdout.strip()}")
    print(f"offline: {len(pins)} pinned requirements, {len(problems)} problem(s)")
    return problems


# --- offline vulnerability check against the PyPA Advisory Database snapshot ---------------


@dataclass(frozen=True)
class Advisory:
    """One advisory of the snapshot, reduced to what the evaluation needs."""

    package: str  # normalised name of the affected package
    id: str
    aliases: tuple[str, ...]
    ranges: tuple[tuple[Mapping[str, str], ...], ...]  # events of the ECOSYSTEM ranges
    versions: tuple[str, ...] = ()
    withdrawn: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Advisory:
        return cls(
            package=_normalise(str(data.get("affected_package") or data["package"])),
            id=str(data["id"]),
            aliases=tuple(data.get("aliases") or ()),
            # GIT ranges name commits, not releases: only ECOSYSTEM ranges say which PyPI
            # versions are affected.
            ranges=tuple(
                tuple(r["events"]) for r in data.get("ranges") or () if r["type"] == "ECOSYSTEM"
            ),
            versions=tuple(data.get("versions") or ()),
            withdrawn=bool(data.get("withdrawn")),
        )


@dataclass(frozen=True)
class Verdict:
    affected: bool
    fixed: str | None = None  # first fixed release above the pin, when one is recorded
    last_affected: str | None = None  # when the range ends with last_affected, not fixed

    def fixed_in(self) -> str:
        if self.fixed:
            return self.fixed
        if self.last_affected:
            return f"no fix recorded (last affected {self.last_affected})"
        return "no fix recorded"


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    fixed: str  # "fixed in" as printed
    superseded_by: str | None = None


@dataclass
class VulnerabilityReport:
    findings: list[Finding]
    superseded: list[Finding]
    unevaluated: list[str]
    uncovered: list[str]
    packages_with_advisories: set[str]
    advisories_evaluated: int


def _event_key(event: Mapping[str, str]) -> tuple[Version, int]:
    kind, value = next(iter(event.items()))
    # OSV: events are applied in version order; "0" is before every release, and on a tie
    # "introduced" comes first so that introduced == fixed is an empty range.
    return (Version("0") if value == "0" else Version(value)), (0 if kind == "introduced" else 1)


def range_verdict(events: Sequence[Mapping[str, str]], version: Version) -> Verdict:
    """OSV evaluation of one ECOSYSTEM range (raises InvalidVersion on a bad event)."""
    affected = False
    fixed: str | None = None
    last: str | None = None
    for event in sorted(events, key=_event_key):
        if "introduced" in event:
            if event["introduced"] == "0" or version >= Version(event["introduced"]):
                affected = True
        elif "fixed" in event:
            if version >= Version(event["fixed"]):
                affected = False
            elif fixed is None and last is None:
                fixed = event["fixed"]  # the nearest end of the segment holding the pin
        elif "last_affected" in event:
            if version > Version(event["last_affected"]):
                affected = False
            elif fixed is None and last is None:
                last = event["last_affected"]
        # "limit" only exists for GIT ranges, which are not evaluated.
    return Verdict(affected, fixed, last) if affected else Verdict(False)


def advisory_verdict(advisory: Advisory, version: Version) -> Verdict:
    """Affected if any ECOSYSTEM range includes the version or it is listed explicitly."""
    for events in advisory.ranges:
        verdict = range_verdict(events, version)
        if verdict.affected:
            return verdict
    for listed in advisory.versions:
        try:
            if Version(listed) == version:
                return Verdict(True)
        except InvalidVersion:
            if listed == str(version):
                return Verdict(True)
    return Verdict(False)


def load_snapshot(path: Path) -> tuple[dict[str, Any], list[Advisory]]:
    data = json.loads(path.read_text())
    return data["header"], [Advisory.from_json(item) for item in data["advisories"]]


def _twin(placeholder: Advisory, advisories: Sequence[Advisory]) -> Advisory | None:
    """The allocated advisory that carries one of a placeholder's aliases, if read."""
    for other in advisories:
        if (
            other.package == placeholder.package
            and not other.id.startswith(PLACEHOLDER_PREFIX)
            and set(other.aliases) & set(placeholder.aliases)
        ):
            return other
    return None


def check_pins(
    pins: Mapping[str, str], advisories: Sequence[Advisory], looked_up: Sequence[str]
) -> VulnerabilityReport:
    report = VulnerabilityReport([], [], [], [], set(), 0)
    covered = {_normalise(name) for name in looked_up}
    report.uncovered = sorted(name for name in pins if name not in covered)
    for advisory in advisories:
        pinned = pins.get(advisory.package)
        if pinned is None or advisory.withdrawn:
            continue
        report.packages_with_advisories.add(advisory.package)
        report.advisories_evaluated += 1
        try:
            verdict = advisory_verdict(advisory, Version(pinned))
        except InvalidVersion as exc:
            # An advisory that cannot be evaluated is reported, never counted as clean.
            report.unevaluated.append(f"{advisory.package} {pinned} {advisory.id}: {exc}")
            continue
        if not verdict.affected:
            continue
        twin = _twin(advisory, advisories) if advisory.id.startswith(PLACEHOLDER_PREFIX) else None
        finding = Finding(
            advisory.package,
            pinned,
            advisory.id,
            advisory.aliases,
            verdict.fixed_in(),
            twin.id if twin else None,
        )
        # A placeholder is superseded by its allocated twin, which is evaluated on its own
        # (and reported if it affects the pin): the database no longer serves the placeholder.
        (report.superseded if twin else report.findings).append(finding)
    return report


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def vulnerability_check(requirements: Path, snapshot: Path) -> int:
    pins, _ = parse_pins(requirements)
    header, advisories = load_snapshot(snapshot)
    coverage = header["coverage"]
    report = check_pins(pins, advisories, coverage["looked_up"])
    print(
        f"vulnerabilities: {header['source']} snapshot {snapshot.relative_to(ROOT)}"
        if snapshot.is_relative_to(ROOT)
        else f"vulnerabilities: {header['source']} snapshot {snapshot}"
    )
    head = ("package", "pinned", "advisory", "aliases", "fixed in")
    if report.findings:
        rows = [head] + [
            (
                f.package,
                f.version,
                f.advisory,
                ",".join(f.aliases) or "-",
                f.fixed,
            )
            for f in report.findings
        ]
        print("\n".join(_table(rows)))
    if report.superseded:
        flagged = {f.advisory for f in report.findings}
        print("  not counted: placeholder files whose allocated advisory (same alias) is evaluated")
        rows = [("package", "pinned", "placeholder", "aliases", "allocated advisory")] + [
            (
                f.package,
                f.version,
                f.advisory,
                ",".join(f.aliases) or "-",
                f"{f.superseded_by} "
                + (
                    "(pin affected, listed above)"
                    if f.superseded_by in flagged
                    else "(pin not affected)"
                ),
            )
            for f in report.superseded
        ]
        print("\n".join(_table(rows)))
    for line in report.unevaluated:
        print(f"  could not evaluate: {line}")
    if report.uncovered:
        print(f"  not in the snapshot's coverage (refresh it): {', '.join(report.uncovered)}")
    not_read = sum(item["count"] for item in coverage["not_read"])
    affected_pins = {f.package for f in report.findings}
    print(
        f"vulnerabilities: {len(pins)} pins, {len(report.packages_with_advisories)} with "
        f"advisories in the snapshot, {report.advisories_evaluated} advisories evaluated, "
        f"{len(affected_pins)} affected pin(s), {len(report.superseded)} superseded "
        f"placeholder(s); snapshot gathered {header['gathered']}, newest advisory modified "
        f"{header['newest_modified'][:10]}, {not_read} listed advisories not read: a stored "
        "copy of unknown freshness, `make audit` (OSV) is authoritative"
    )
    if report.findings:
        return AFFECTED_EXIT
    return 1 if report.uncovered or report.unevaluated else 0


def online_audit(pip_audit: Path, requirements: Path, service: str) -> int:
    command = [
        str(pip_audit),
        "-r",
        str(requirements),
        "--no-deps",  # every requirement is pinned (checked above): nothing to resolve
        "--disable-pip",
        "--progress-spinner",
        "off",
        "-s",
        service,
    ]
    print("$ " + " ".join(command[1:]).replace(str(ROOT) + os.sep, ""))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    skipped = output.count("could not be audited")
    if any(marker in output for marker in UNREACHABLE) or skipped:
        print(
            f"pip-audit could not reach the {service} vulnerability service "
            f"({skipped} package(s) not audited): NOT AUDITED. Run `make audit` where "
            "https://api.osv.dev (or https://pypi.org) is reachable."
        )
        return 3
    print(result.stdout.strip() or "(no output)")
    return result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--pip-audit", type=Path, default=None)
    parser.add_argument("--service", default=os.environ.get("AUDIT_SERVICE", "osv"))
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    args = parser.parse_args()
    problems = offline_check(args.requirements, Path(sys.executable))
    for problem in problems:
        print(f"  {problem}")
    if args.pip_audit is None:
        # `make audit-offline`: the snapshot check runs even when the pins have problems, and
        # an affected pin (exit 4) outranks them.
        status = vulnerability_check(args.requirements, args.snapshot)
        return status or (1 if problems else 0)
    if problems:
        return 1
    return online_audit(args.pip_audit, args.requirements, args.service)


if __name__ == "__main__":
    sys.exit(main())
