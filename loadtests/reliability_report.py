"""`make reliability-report`: the fault suite, the fuzz tests and the quick load run, in one report.

Runs, each as its own process:
  1. the fault suite (tests/service/test_faults.py) under pytest with a JUnit XML report: every scenario with its
     outcome and, where the test records them (`record_property`), its counts: submitted, completed,
     failed_cleanly, lost, duplicated (lost and duplicated must be 0);
  2. the fuzz tests (tests/fuzz) the same way, with the examples each property ran
     (DEEPFAKE_FUZZ_COUNTS_FILE, written by tests/fuzz/conftest.py);
  3. the quick load run (loadtests/run_load.py --quick): throughput, latencies, refusals, lost jobs, duplicates.

Prints every scenario with its outcome and counts, the load figures and the fuzz counts, and writes the same as
var/reports/reliability.json and var/reports/reliability.md. Exit status 1 when a scenario failed, a job was
lost or a delivery duplicated. `--skip-faults`, `--skip-fuzz`, `--skip-load` leave a part out (`--load-report
PATH` reuses an earlier load run's JSON instead of running one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPORTS_DIR = ROOT / "var" / "reports"
FAULT_SUITE = "tests/service/test_faults.py"
#: The Triton outages live beside the real Triton fixture, in the worker's Triton tests (its `outage` cases).
FAULT_SUITE_ARGS = (FAULT_SUITE, "tests/worker/test_triton.py", "-k", "test_faults or outage")
FUZZ_SUITE = "tests/fuzz"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
#: Counts a fault test may record with pytest's `record_property(name, value)`.
COUNT_NAMES = ("submitted", "completed", "failed_cleanly", "lost", "duplicated")
#: The scenarios issue 13 asks the fault suite for, each with words one of its test names holds; listed as
#: missing when no test name that ran holds any of them.
EXPECTED_FAULTS: dict[str, tuple[str, ...]] = {
    "worker SIGKILL mid-stage": ("sigkill", "kill"),
    "Redis restart with AOF": ("aof", "append_only"),
    "Redis data loss": ("data_loss", "losing_its_data"),
    "S3 down 20 s and restarted": ("s3", "object_storage"),
    "Triton down longer than the retry budget": ("triton_outage",),
    "webhook receiver down 2 minutes": ("receiver",),
    "gateway restarted during an upload": ("gateway_restarted", "gateway"),
}


@dataclass
class Scenario:
    """One test case of a suite: its outcome, time, and the counts it recorded."""

    name: str
    outcome: str  # passed, failed, error, skipped, xfailed
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class SuiteRun:
    suite: str
    present: bool
    exit_code: int | None = None
    seconds: float = 0.0
    scenarios: list[Scenario] = field(default_factory=list)

    @property
    def failed(self) -> list[Scenario]:
        return [s for s in self.scenarios if s.outcome in ("failed", "error")]


# --- running and parsing --------------------------------------------------------------------------------------------


def parse_junit(path: Path) -> list[Scenario]:
    """Every <testcase> of a pytest JUnit XML file, with its outcome and its recorded properties."""
    scenarios = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                message = (element.get("message") or "").splitlines()[0][:200] if element.get("message") else ""
                outcome = {"failure": "failed", "error": "error"}.get(tag, "skipped")
                if tag == "skipped" and element.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                break
        counts = {
            prop.get("name", ""): _as_int(prop.get("value"))
            for prop in case.iter("property")
            if prop.get("name") in COUNT_NAMES
        }
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        scenarios.append(Scenario(name, outcome, round(float(case.get("time") or 0), 1), counts, message))
    return scenarios


def _as_int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def run_pytest(suite: str, junit: Path, env: dict[str, str] | None = None, arguments: tuple[str, ...] = ()) -> SuiteRun:
    """Run one suite under pytest (its own process; `arguments` replace the suite's path), then read its JUnit
    report."""
    if not (ROOT / suite).exists():
        return SuiteRun(suite, present=False)
    junit.unlink(missing_ok=True)
    arguments = arguments or (suite,)
    print(f"\n--- pytest {' '.join(arguments)} ---", flush=True)
    started = time.monotonic()
    result = subprocess.run([*PYTEST, *arguments, f"--junitxml={junit}"], cwd=ROOT,
                            env={**os.environ, **(env or {})}, check=False)  # fmt: skip
    run = SuiteRun(suite, True, result.returncode, round(time.monotonic() - started, 1))
    if junit.is_file():
        run.scenarios = parse_junit(junit)
    return run


def run_load(output: Path) -> dict[str, Any] | None:
    print("\n--- loadtests/run_load.py --quick ---", flush=True)
    command = [sys.executable, str(ROOT / "loadtests" / "run_load.py"), "--quick", "--output", str(output)]
    subprocess.run(command, cwd=ROOT, check=False)
    return json.loads(output.read_text()) if output.is_file() else None


# --- the report -----------------------------------------------------------------------------------------------------


def missing_faults(faults: SuiteRun) -> list[str]:
    """Expected scenarios no test name mentions (matched loosely on their key words)."""
    names = " ".join(s.name.lower() for s in faults.scenarios)
    return [scenario for scenario, words in EXPECTED_FAULTS.items() if not any(word in names for word in words)]


def load_figures(load: dict[str, Any] | None) -> dict[str, Any]:
    if load is None:
        return {}
    submit = load["endpoints"].get("POST /v1/jobs", {})
    return {
        "sustainable_jobs_per_s": load["plan"]["sustainable_rate"],
        "offered_per_s": load["offered_rate_per_s"],
        "completed_jobs_per_s": load["completed_jobs_per_s"],
        "submitted": load["submitted"],
        "accepted": load["accepted"],
        "refused_429": load["refused_429"],
        "submit_answers": load["submit_answers"],
        "submit_ms": submit,
        "end_to_end_webhook_ms": load["end_to_end_webhook_ms"],
        "lost_jobs": load["lost_jobs"],
        "lost_webhooks": load["lost_webhooks"],
        "duplicate_deliveries": load["duplicate_deliveries"],
        "bad_signatures": load["bad_signatures"],
        "errors": load["errors"],
        "outcomes": load["outcomes"],
    }


def build(faults: SuiteRun, fuzz: SuiteRun, fuzz_counts: dict[str, int], load: dict[str, Any] | None) -> dict:
    lost = sum(s.counts.get("lost", 0) for s in faults.scenarios) + (load or {}).get("lost_jobs", 0)
    duplicated = sum(s.counts.get("duplicated", 0) for s in faults.scenarios) + (load or {}).get(
        "duplicate_deliveries", 0
    )
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "faults": {**asdict(faults), "missing_scenarios": missing_faults(faults) if faults.present else []},
        "fuzz": {**asdict(fuzz), "examples": fuzz_counts, "total_examples": sum(fuzz_counts.values())},
        "load": load_figures(load),
        "totals": {
            "fault_scenarios": len(faults.scenarios),
            "fault_scenarios_failed": len(faults.failed),
            "fuzz_tests_failed": len(fuzz.failed),
            "lost": lost,
            "duplicated": duplicated,
        },
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Reliability report ({report['generated_at']})", "", "## Fault scenarios", ""]
    faults = report["faults"]
    if not faults["present"]:
        lines.append(f"`{faults['suite']}` did not run (absent, or --skip-faults).")
    else:
        lines += ["| scenario | outcome | s | " + " | ".join(COUNT_NAMES) + " |", "|---|---|---|" + "---|" * 5]
        for s in faults["scenarios"]:
            counts = " | ".join(str(s["counts"].get(name, "-")) for name in COUNT_NAMES)
            lines.append(f"| {s['name']} | {s['outcome']} | {s['seconds']} | {counts} |")
        if faults["missing_scenarios"]:
            lines += ["", "Not covered by any test name: " + "; ".join(faults["missing_scenarios"]) + "."]
    lines += ["", "## Load (quick run)", ""]
    load = report["load"]
    if load:
        lines += [f"- {key}: `{json.dumps(value)}`" for key, value in load.items()]
    else:
        lines.append("Not run.")
    lines += ["", "## Fuzz", ""]
    fuzz = report["fuzz"]
    lines += [f"- {s['name']}: {s['outcome']}" for s in fuzz["scenarios"]]
    lines += ["", f"Examples run: {fuzz['total_examples']}", ""]
    lines += [f"- {name}: {count}" for name, count in sorted(fuzz["examples"].items())]
    totals = report["totals"]
    lines += ["", "## Totals", "", *(f"- {key}: {value}" for key, value in totals.items()), ""]
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    print("\n=== reliability report ===")
    faults = report["faults"]
    print(f"fault scenarios ({faults['suite']}):")
    if not faults["present"]:
        print("  did not run (absent, or --skip-faults)")
    for s in faults["scenarios"]:
        counts = ", ".join(f"{name} {s['counts'][name]}" for name in COUNT_NAMES if name in s["counts"])
        print(f"  {s['outcome']:<8} {s['name']}  ({s['seconds']} s{'; ' + counts if counts else ''})")
    for missing in faults["missing_scenarios"]:
        print(f"  MISSING  {missing}")
    print("load (quick run):")
    for key, value in report["load"].items() or [("not run", "")]:
        print(f"  {key}: {json.dumps(value) if value != '' else ''}")
    fuzz = report["fuzz"]
    outcomes: dict[str, int] = {}
    for s in fuzz["scenarios"]:
        outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1
    print(f"fuzz ({fuzz['suite']}): {outcomes}; {fuzz['total_examples']} examples")
    for name, count in sorted(fuzz["examples"].items()):
        print(f"  {count:>5}  {name}")
    for s in fuzz["scenarios"]:
        if s["outcome"] != "passed":
            print(f"  {s['outcome']:<8} {s['name']}: {s['message']}")
    print(f"totals: {json.dumps(report['totals'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--skip-fuzz", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--load-report", type=Path, help="use this run_load.py JSON instead of running one")
    parser.add_argument("--output-dir", type=Path, default=REPORTS_DIR)
    args = parser.parse_args(argv)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)

    if args.skip_faults:
        faults = SuiteRun(FAULT_SUITE, present=False)
    else:
        faults = run_pytest(FAULT_SUITE, out / "faults-junit.xml", arguments=FAULT_SUITE_ARGS)
    counts_file = out / "fuzz-counts.json"
    counts_file.unlink(missing_ok=True)
    fuzz = (
        SuiteRun(FUZZ_SUITE, present=False)
        if args.skip_fuzz
        else run_pytest(FUZZ_SUITE, out / "fuzz-junit.xml", {"DEEPFAKE_FUZZ_COUNTS_FILE": str(counts_file)})
    )
    fuzz_counts = json.loads(counts_file.read_text()) if counts_file.is_file() else {}
    if args.load_report:
        load = json.loads(args.load_report.read_text())
    else:
        load = None if args.skip_load else run_load(out / "loadtest-quick.json")

    report = build(faults, fuzz, fuzz_counts, load)
    (out / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "reliability.md").write_text(markdown(report))
    print_report(report)
    print(f"written: {out / 'reliability.json'}, {out / 'reliability.md'}")
    totals = report["totals"]
    bad = totals["fault_scenarios_failed"] or totals["fuzz_tests_failed"] or totals["lost"] or totals["duplicated"]
    load_failed = bool(load) and bool(load["errors"] or load["lost_webhooks"] or load["bad_signatures"])
    return 1 if bad or load_failed else 0


if __name__ == "__main__":
    sys.exit(main())
