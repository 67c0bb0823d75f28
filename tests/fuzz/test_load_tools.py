"""The load test's own instruments, checked so that the figures they report can be trusted: the webhook
receiver counts a correctly signed delivery once per event id (any further one as a duplicate) and never counts
a tampered body or signature; the reliability report reads outcomes and counts from pytest's JUnit XML.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from deepfake_client.signing import SIGNATURE_HEADER, sign
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import PARSER_EXAMPLES, count_example, fuzz_settings

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"
SECRET = "whsec_test"

pytestmark = pytest.mark.timeout(120)


def load_module(name: str) -> ModuleType:
    """A module of loadtests/ (a folder of scripts, not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LOADTESTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def event(event_id: str, job_id: str) -> bytes:
    return json.dumps({"id": event_id, "type": "job.succeeded", "job": {"id": job_id, "status": "succeeded"}}).encode()


@fuzz_settings(PARSER_EXAMPLES)
@given(
    deliveries=st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 5)), min_size=1, max_size=12),
    flip=st.integers(0, 10_000),
)
def test_receiver_counts_signed_deliveries_once_per_event(deliveries: list[tuple[int, bool, int]], flip: int) -> None:
    """(event number, tampered?, how) per delivery: signed ones count per event; tampered ones never do."""
    count_example("webhook_receiver")
    receiver = load_module("webhook_receiver").WebhookReceiver(SECRET)
    expected: dict[str, int] = {}
    bad = 0
    for number, tampered, how in deliveries:
        body = event(f"evt_{number}", f"job{number}")
        header = sign(SECRET, body)
        if tampered:
            bad += 1
            if how % 3 == 0:
                position = flip % len(body)
                body = body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1 :]
            elif how % 3 == 1:
                header = sign("whsec_other", body)
            else:
                header = sign(SECRET, body, timestamp=1)  # a replay from 1970
        else:
            expected[f"evt_{number}"] = expected.get(f"evt_{number}", 0) + 1
        receiver.record(header, body)
    counts = receiver.snapshot()
    assert dict(counts.deliveries) == expected
    assert counts.bad_signatures == bad
    assert counts.duplicates == sum(n - 1 for n in expected.values())
    assert set(counts.first_by_job) == {f"job{key.removeprefix('evt_')}" for key in expected}


def test_receiver_serves_on_loopback_and_answers_200() -> None:
    receiver = load_module("webhook_receiver").WebhookReceiver(SECRET).start()
    try:
        assert receiver.url.startswith("http://127.0.0.1:")
        body = event("evt_x", "jobx")
        for _ in range(2):
            response = httpx.post(receiver.url, content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
            assert response.status_code == 200
        assert httpx.post(receiver.url, content=body, headers={SIGNATURE_HEADER: "t=1,v1=00"}).status_code == 200
        counts = receiver.snapshot()
        assert counts.deliveries["evt_x"] == 2 and counts.duplicates == 1 and counts.bad_signatures == 1
    finally:
        receiver.stop()


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.service.test_faults" name="test_worker_sigkill_mid_stage" time="41.5">
  <properties><property name="submitted" value="20"/><property name="completed" value="20"/>
  <property name="failed_cleanly" value="0"/><property name="lost" value="0"/><property name="duplicated" value="0"/>
  </properties></testcase>
<testcase classname="tests.service.test_faults" name="test_s3_down_20s" time="30.0">
  <failure message="AssertionError: 2 jobs lost">trace</failure>
  <properties><property name="lost" value="2"/></properties></testcase>
<testcase classname="tests.service.test_faults" name="test_triton_outage" time="1.0">
  <skipped type="pytest.xfail" message="issue 13 finding 5"/></testcase>
<testcase classname="tests.service.test_faults" name="test_skipped" time="0.0">
  <skipped type="pytest.skip" message="no Triton"/></testcase>
</testsuite></testsuites>
"""


def test_report_reads_outcomes_and_counts_from_junit(tmp_path: Path) -> None:
    report = load_module("reliability_report")
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    scenarios = {s.name: s for s in report.parse_junit(path)}
    assert scenarios["test_faults::test_worker_sigkill_mid_stage"].outcome == "passed"
    assert scenarios["test_faults::test_worker_sigkill_mid_stage"].counts == {
        "submitted": 20, "completed": 20, "failed_cleanly": 0, "lost": 0, "duplicated": 0
    }  # fmt: skip
    assert scenarios["test_faults::test_s3_down_20s"].outcome == "failed"
    assert scenarios["test_faults::test_s3_down_20s"].counts == {"lost": 2}
    assert scenarios["test_faults::test_triton_outage"].outcome == "xfailed"
    assert scenarios["test_faults::test_skipped"].outcome == "skipped"
    run = report.SuiteRun("tests/service/test_faults.py", True, 1, 72.5, list(scenarios.values()))
    built = report.build(run, report.SuiteRun("tests/fuzz", False), {"a": 3}, None)
    assert built["totals"]["lost"] == 2 and built["totals"]["fault_scenarios_failed"] == 1
    assert "S3 down 20 s and restarted" not in built["faults"]["missing_scenarios"]
    assert "Redis data loss" in built["faults"]["missing_scenarios"]
    assert "| test_faults::test_s3_down_20s | failed |" in report.markdown(built)


def test_the_report_runs_test_files_that_exist() -> None:
    """A moved test file must not turn the reliability report's scenarios into 'file not found'."""
    report = load_module("reliability_report")
    files = [arg for arg in (*report.FAULT_SUITE_ARGS, report.FUZZ_SUITE) if arg.startswith("tests/")]
    assert len(files) >= 3
    missing = [name for name in files if not (LOADTESTS.parent / name).exists()]
    assert not missing, f"loadtests/reliability_report.py runs tests that do not exist: {missing}"
