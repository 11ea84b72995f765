"""`make audit`: the pinned stack of requirements.txt, checked offline and against known
vulnerabilities (docs/security.md).

1. Offline, always: every requirement is pinned with `==`; the project's .venv holds exactly
   those versions; `pip check` finds no broken dependency.
2. Online: `pip-audit` (pinned, in its own venv var/audit-venv so that it does not enter the
   runtime stack) on requirements.txt against the OSV database (`-s osv`; `-s pypi` with
   AUDIT_SERVICE=pypi). When the service cannot be reached the target fails with exit 3 and
   says so: an audit that could not run is never reported as clean.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")
UNREACHABLE = ("getaddrinfo", "ConnectionError", "Max retries exceeded", "Temporary failure")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def offline_check(requirements: Path, python: Path) -> list[str]:
    problems: list[str] = []
    pins: dict[str, str] = {}
    for number, line in enumerate(requirements.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            problems.append(f"{requirements.name}:{number}: not pinned with '==': {line}")
            continue
        pins[_normalise(match.group(1))] = match.group(2)
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
    args = parser.parse_args()
    problems = offline_check(args.requirements, Path(sys.executable))
    for problem in problems:
        print(f"  {problem}")
    if problems:
        return 1
    if args.pip_audit is None:
        return 0
    return online_audit(args.pip_audit, args.requirements, args.service)


if __name__ == "__main__":
    sys.exit(main())
