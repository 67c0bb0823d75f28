"""Fixtures of the console tests: a gateway under uvicorn with this module's own tenants, on the shared local stack
(Redis, the S3 server, Celery workers and the plumbing model of the tests/stack plugin), and Debian's chromium
driven by Playwright, whose every page fails its test on a console error, an uncaught exception or a CSP violation.

Screenshots go to var/test-artifacts/console/ (ignored by git).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.stack.fixtures import running_gateway
from tests.stack.gateway_support import Gateway

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
CHROMIUM = os.environ.get("CONSOLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# One tenant per test, so each sees only its own jobs: name -> (rate_limit_per_minute, max_concurrent_jobs).
CONSOLE_TENANTS = dict.fromkeys(("video", "photo", "lister", "hooks", "keyboard", "cancel"), (100_000, 1000))

# Records CSP violations in the page itself (init scripts are not subject to the page's CSP).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


@pytest.fixture(scope="session")
def console_gateway(
    service_env: dict[str, str],
    celery_worker,  # noqa: ANN001
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A gateway with workers, serving the console, with the tenants of CONSOLE_TENANTS."""
    with running_gateway(service_env, tmp_path_factory.mktemp("console-gateway"), CONSOLE_TENANTS) as handle:
        yield handle


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (infra/scripts/install-system-deps.sh).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class BrowserLog:
    """What the page reported: console errors, uncaught exceptions; `allowed` substrings are expected errors."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [error for error in self.errors if not any(part in error for part in self.allowed)]


@dataclass
class ConsolePage:
    page: object
    log: BrowserLog
    gateway: Gateway

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("() => window.__cspViolations || []")  # type: ignore[attr-defined]


@pytest.fixture
def console_page(browser, console_gateway: Gateway) -> Iterator[ConsolePage]:  # noqa: ANN001
    """A fresh browser context (empty session storage) at desktop size; fails the test on any page error."""
    context = browser.new_context(viewport=DESKTOP, base_url=console_gateway.url, accept_downloads=True)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    context.set_default_timeout(30_000)
    page = context.new_page()
    log = BrowserLog()
    page.on("console", lambda message: log.errors.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "assert") else None)  # fmt: skip
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
    handle = ConsolePage(page, log, console_gateway)
    yield handle
    violations = handle.csp_violations() if not page.is_closed() else []
    context.close()
    assert not violations, f"CSP violations: {violations}"
    assert not log.unexpected(), f"browser console errors: {log.unexpected()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests take seconds each (the stack plugin marks every test here `services`)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and "console_page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
