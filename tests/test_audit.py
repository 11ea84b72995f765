"""tools/audit.py: the offline vulnerability check (OSV range evaluation) and its snapshot of
the PyPA Advisory Database, config/security/pypa-advisories.json (docs/security.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _load_audit() -> ModuleType:
    # tools/ is not a package: load the script as a module (registered first, for dataclasses).
    spec = importlib.util.spec_from_file_location("kairos_audit", ROOT / "tools" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


audit = _load_audit()


def advisory(
    ranges: Sequence[Sequence[Mapping[str, str]]] = (),
    *,
    package: str = "demo",
    id: str = "PYSEC-2099-1",
    aliases: Sequence[str] = ("CVE-2099-0001",),
    versions: Sequence[str] = (),
    **extra: Any,
) -> Any:
    data: dict[str, Any] = {
        "package": package,
        "id": id,
        "aliases": list(aliases),
        "ranges": [{"type": "ECOSYSTEM", "events": list(events)} for events in ranges],
        "versions": list(versions),
        **extra,
    }
    return audit.Advisory.from_json(data)


def affected(adv: Any, version: str) -> bool:
    return bool(audit.advisory_verdict(adv, Version(version)).affected)


# --- the range evaluator -------------------------------------------------------------------


def test_introduced_fixed_is_a_half_open_interval() -> None:
    adv = advisory([[{"introduced": "1.0"}, {"fixed": "2.0"}]])
    assert [affected(adv, v) for v in ("0.9", "1.0", "1.5", "1.99", "2.0", "2.1")] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert audit.advisory_verdict(adv, Version("1.5")).fixed_in() == "2.0"


def test_introduced_zero_means_every_earlier_release() -> None:
    adv = advisory([[{"introduced": "0"}, {"fixed": "0.3.4"}]])
    assert affected(adv, "0")
    assert affected(adv, "0.0.1")
    assert affected(adv, "0.3.3")
    assert not affected(adv, "0.3.4")


def test_open_range_affects_every_later_release() -> None:
    adv = advisory([[{"introduced": "0"}]])
    assert affected(adv, "3.20")
    assert affected(adv, "2099.1")
    assert audit.advisory_verdict(adv, Version("3.20")).fixed_in() == "no fix recorded"


def test_last_affected_is_inclusive() -> None:
    adv = advisory([[{"introduced": "1.0"}, {"last_affected": "1.4"}]])
    assert affected(adv, "1.4")
    assert not affected(adv, "1.4.1")
    assert not affected(adv, "0.9")
    assert "last affected 1.4" in audit.advisory_verdict(adv, Version("1.2")).fixed_in()


def test_explicit_versions_without_ranges() -> None:
    adv = advisory(versions=["9.2.0", "1.0.0-a"])
    assert affected(adv, "9.2.0")
    assert affected(adv, "9.2")  # PEP 440: 9.2 == 9.2.0
    assert affected(adv, "1.0.0a0")  # normalised spelling of 1.0.0-a
    assert not affected(adv, "9.2.1")
    assert not affected(adv, "9.1.9")


def test_explicit_versions_add_to_ranges() -> None:
    adv = advisory([[{"introduced": "2.0"}, {"fixed": "2.1"}]], versions=["1.5"])
    assert affected(adv, "1.5")
    assert affected(adv, "2.0.3")
    assert not affected(adv, "1.6")


def test_several_ranges_and_unsorted_events() -> None:
    # As urllib3's PYSEC-2023-212 lists them: the 2.x segment first, then the 1.x one.
    unsorted = [
        {"introduced": "2.0.0"},
        {"fixed": "2.0.7"},
        {"introduced": "0"},
        {"fixed": "1.26.18"},
    ]
    adv = advisory([unsorted])
    assert affected(adv, "1.26.17")
    assert audit.advisory_verdict(adv, Version("1.26.17")).fixed_in() == "1.26.18"
    assert not affected(adv, "1.26.18")
    assert not affected(adv, "1.99")
    assert affected(adv, "2.0.6")
    assert audit.advisory_verdict(adv, Version("2.0.6")).fixed_in() == "2.0.7"
    assert not affected(adv, "2.0.7")
    assert not affected(adv, "2.8.0")
    # The same as two range objects (pydantic's PYSEC-2021-47 has three).
    split = advisory(
        [
            [{"introduced": "1.8"}, {"fixed": "1.8.2"}],
            [{"introduced": "1.7"}, {"fixed": "1.7.4"}],
            [{"introduced": "0"}, {"fixed": "1.6.2"}],
        ]
    )
    assert [affected(split, v) for v in ("1.6.1", "1.6.2", "1.7.3", "1.7.4", "1.8.1", "1.8.2")] == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]


def test_pre_releases_compare_before_their_release() -> None:
    adv = advisory([[{"introduced": "0"}, {"fixed": "2.0.0"}]])
    assert affected(adv, "2.0.0rc1")
    assert affected(adv, "2.0.0b2")
    assert affected(adv, "2.0.0.dev0")
    assert not affected(adv, "2.0.0")
    assert not affected(adv, "2.0.0.post1")
    # A fix published as a release candidate (airflow's PYSEC-0000-CVE-2024-28746).
    rc_fix = advisory([[{"introduced": "2.8.0"}, {"fixed": "2.8.3rc1"}]])
    assert affected(rc_fix, "2.8.3b1")
    assert affected(rc_fix, "2.8.2")
    assert not affected(rc_fix, "2.8.3rc1")
    assert not affected(rc_fix, "2.8.3")
    assert not affected(rc_fix, "2.8.0rc1")  # before introduced


def test_introduced_equal_to_fixed_is_empty_and_inverted_pair_is_open() -> None:
    assert not affected(advisory([[{"introduced": "1.0"}, {"fixed": "1.0"}]]), "1.0")
    # OSV applies events in version order: introduced 3.0 after fixed 3.0.0b9 stays open
    # (the legacy marshmallow placeholder of the snapshot).
    inverted = advisory([[{"introduced": "3.0"}, {"fixed": "3.0.0b9"}]])
    assert affected(inverted, "4.4.0")
    assert not affected(inverted, "3.0.0b9")


def test_git_ranges_are_not_evaluated() -> None:
    data = {
        "package": "demo",
        "id": "PYSEC-2099-2",
        "aliases": [],
        "ranges": [
            {"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "9b53045c34e6"}]},
            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.8.1"}]},
        ],
    }
    adv = audit.Advisory.from_json(data)
    assert len(adv.ranges) == 1
    assert affected(adv, "2.8.0")
    assert not affected(adv, "2.8.1")


# --- check_pins: findings, placeholders, coverage -------------------------------------------


def test_check_pins_reports_affected_pins_with_their_fix() -> None:
    advisories = [
        advisory([[{"introduced": "0"}, {"fixed": "2.0"}]], package="Demo_Pkg"),
        advisory([[{"introduced": "0"}, {"fixed": "1.0"}]], id="PYSEC-2099-3"),
        advisory([[{"introduced": "0"}]], package="other", id="PYSEC-2099-4"),
    ]
    report = audit.check_pins({"demo-pkg": "1.5", "demo": "1.5"}, advisories, ["demo-pkg", "demo"])
    assert [(f.package, f.version, f.advisory, f.fixed) for f in report.findings] == [
        ("demo-pkg", "1.5", "PYSEC-2099-1", "2.0")
    ]
    assert report.packages_with_advisories == {"demo-pkg", "demo"}
    assert report.advisories_evaluated == 2  # "other" is not pinned
    assert report.uncovered == []


def test_placeholder_superseded_by_allocated_twin_is_not_counted() -> None:
    placeholder = advisory(
        [[{"introduced": "0"}]], id="PYSEC-0000-CVE-2024-3651", aliases=["CVE-2024-3651"]
    )
    allocated = advisory(
        [[{"introduced": "0.1"}, {"fixed": "3.7"}]], id="PYSEC-2024-60", aliases=["CVE-2024-3651"]
    )
    report = audit.check_pins({"demo": "3.20"}, [placeholder, allocated], ["demo"])
    assert report.findings == []
    assert [(f.advisory, f.superseded_by) for f in report.superseded] == [
        ("PYSEC-0000-CVE-2024-3651", "PYSEC-2024-60")
    ]
    # The allocated advisory is still evaluated on its own: below its fix, it is a finding.
    report = audit.check_pins({"demo": "3.6"}, [placeholder, allocated], ["demo"])
    assert [f.advisory for f in report.findings] == ["PYSEC-2024-60"]


def test_placeholder_without_twin_counts() -> None:
    lonely = advisory([[{"introduced": "0"}]], id="PYSEC-0000-CVE-2099-9", aliases=["CVE-2099-9"])
    unrelated = advisory(
        [[{"introduced": "0"}, {"fixed": "0.1"}]], id="PYSEC-2099-5", aliases=["CVE-2099-5"]
    )
    report = audit.check_pins({"demo": "1.0"}, [lonely, unrelated], ["demo"])
    assert [f.advisory for f in report.findings] == ["PYSEC-0000-CVE-2099-9"]
    assert report.superseded == []


def test_withdrawn_and_other_package_advisories_are_skipped() -> None:
    withdrawn = advisory([[{"introduced": "0"}]], withdrawn="2024-01-01T00:00:00Z")
    imagecodecs = advisory(
        [[{"introduced": "0"}]], package="pillow", affected_package="imagecodecs"
    )
    report = audit.check_pins(
        {"demo": "1.0", "pillow": "13.0.0"}, [withdrawn, imagecodecs], ["demo", "pillow"]
    )
    assert report.findings == []
    assert report.advisories_evaluated == 0


def test_unevaluable_advisory_and_uncovered_pin_are_reported() -> None:
    broken = advisory([[{"introduced": "0"}, {"fixed": "not a version!"}]])
    report = audit.check_pins({"demo": "1.0", "newcomer": "2.0"}, [broken], ["demo"])
    assert report.findings == []
    assert len(report.unevaluated) == 1 and "PYSEC-2099-1" in report.unevaluated[0]
    assert report.uncovered == ["newcomer"]


def _write_snapshot(path: Path, advisories: list[dict[str, Any]], looked_up: list[str]) -> Path:
    header = {
        "source": "PyPA Advisory Database",
        "gathered": "2026-11-23",
        "newest_modified": "2024-07-11T17:21:37Z",
        "coverage": {"looked_up": looked_up, "not_looked_up": [], "not_read": []},
    }
    path.write_text(json.dumps({"header": header, "advisories": advisories}))
    return path


def test_vulnerability_check_prints_the_finding_and_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nJinja2==2.10\nsix==1.17.0\n")
    snapshot = _write_snapshot(
        tmp_path / "snapshot.json",
        [
            {
                "package": "jinja2",
                "id": "PYSEC-2019-217",
                "aliases": ["CVE-2019-10906"],
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}
                ],
            }
        ],
        ["jinja2", "six"],
    )
    assert audit.vulnerability_check(requirements, snapshot) == audit.AFFECTED_EXIT
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "PYSEC-2019-217" in line)
    assert row.split() == ["jinja2", "2.10", "PYSEC-2019-217", "CVE-2019-10906", "2.10.1"]
    assert "1 affected pin(s)" in out and "gathered 2026-11-23" in out

    requirements.write_text("Jinja2==3.1.6\nsix==1.17.0\n")
    assert audit.vulnerability_check(requirements, snapshot) == 0
    assert "0 affected pin(s)" in capsys.readouterr().out

    requirements.write_text("Jinja2==3.1.6\nsix==1.17.0\nnewcomer==1.0\n")
    assert audit.vulnerability_check(requirements, snapshot) == 1
    assert "newcomer" in capsys.readouterr().out


# --- the snapshot of the PyPA Advisory Database ---------------------------------------------


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(audit.SNAPSHOT.read_text())
    return data


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    pinned, problems = audit.parse_pins(ROOT / "requirements.txt")
    assert problems == []
    return dict(pinned)


def test_snapshot_header_names_source_licence_and_date(snapshot: dict[str, Any]) -> None:
    header = snapshot["header"]
    assert header["source_url"] == "https://github.com/pypa/advisory-database"
    assert header["licence"] == "CC-BY-4.0"
    assert "CC-BY-4.0" in header["attribution"]
    assert header["gathered"] == "2026-11-23"
    dates = [a["modified"] for a in snapshot["advisories"] if a["modified"]]
    assert header["newest_modified"] == max(dates)


def test_every_pin_is_looked_up_or_documented(
    snapshot: dict[str, Any], pins: dict[str, str]
) -> None:
    coverage = snapshot["header"]["coverage"]
    accounted = {audit._normalise(n) for n in coverage["looked_up"]} | {
        audit._normalise(item if isinstance(item, str) else item["package"])
        for item in coverage["not_looked_up"]
    }
    assert sorted(set(pins) - accounted) == []
    assert coverage["packages_pinned"] == len(pins)
    with_files = set(coverage["packages_with_files"])
    assert with_files.isdisjoint(coverage["packages_without_files"])
    assert with_files | set(coverage["packages_without_files"]) == set(coverage["looked_up"])


def test_snapshot_counts_add_up(snapshot: dict[str, Any]) -> None:
    coverage = snapshot["header"]["coverage"]
    advisories = snapshot["advisories"]
    assert coverage["advisories_read"] == len(advisories)
    assert coverage["files_listed"] == sum(coverage["packages_with_files"].values())
    not_read = sum(item["count"] for item in coverage["not_read"])
    assert len(advisories) + not_read == coverage["files_listed"]
    for item in coverage["not_read"]:
        assert item["reason"]
        read_here = sum(1 for a in advisories if a["package"] == item["package"])
        assert read_here + item["count"] == coverage["packages_with_files"][item["package"]]
    for package, listed in coverage["packages_with_files"].items():
        assert sum(1 for a in advisories if a["package"] == package) <= listed


def test_snapshot_advisories_are_compact_and_well_formed(snapshot: dict[str, Any]) -> None:
    allowed = {
        "package", "id", "aliases", "modified", "ranges", "versions", "versions_listed",
        "affected_package", "path", "commit", "note", "withdrawn",
    }  # fmt: skip
    keys = [(a["package"], a["id"]) for a in snapshot["advisories"]]
    assert len(keys) == len(set(keys))
    for item in snapshot["advisories"]:
        assert set(item) <= allowed, item["id"]  # no advisory prose (details) is copied
        assert item["path"] == f"vulns/{item['package']}/{item['id']}.yaml"
        assert len(item["commit"]) == 40
        assert item["ranges"] or item.get("versions"), item["id"]
        for rng in item["ranges"]:
            assert rng["type"] == "ECOSYSTEM"
            for event in rng["events"]:
                ((kind, value),) = event.items()
                assert kind in {"introduced", "fixed", "last_affected"}
                Version(value)  # every bound is a PEP 440 version
        listed = item.get("versions_listed")
        if listed:  # a summarised versions list only repeated releases inside the ranges
            adv = audit.Advisory.from_json(item)
            assert affected(adv, listed["first"]) and affected(adv, listed["last"]), item["id"]


def test_check_over_the_real_snapshot(
    snapshot: dict[str, Any], pins: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    header, advisories = audit.load_snapshot(audit.SNAPSHOT)
    report = audit.check_pins(pins, advisories, header["coverage"]["looked_up"])
    assert report.uncovered == []
    assert report.unevaluated == []
    assert report.packages_with_advisories <= set(header["coverage"]["packages_with_files"])
    assert 0 < report.advisories_evaluated <= len(advisories)
    by_id = {(a.package, a.id): a for a in advisories}
    for finding in report.findings + report.superseded:
        assert finding.version == pins[finding.package]
        adv = by_id[(finding.package, finding.advisory)]
        assert audit.advisory_verdict(adv, Version(finding.version)).affected
    for finding in report.superseded:
        assert finding.advisory.startswith(audit.PLACEHOLDER_PREFIX)
        twin = by_id[(finding.package, str(finding.superseded_by))]
        assert set(twin.aliases) & set(finding.aliases)
    status = audit.vulnerability_check(ROOT / "requirements.txt", audit.SNAPSHOT)
    assert status == (audit.AFFECTED_EXIT if report.findings else 0)
    summary = capsys.readouterr().out.splitlines()[-1]
    assert f"{len(pins)} pins" in summary
    assert f"{report.advisories_evaluated} advisories evaluated" in summary
    assert header["newest_modified"][:10] in summary
