"""Steps the console tests share: sign in, drop or pick a file, wait for the verdict, read the page's state."""

from __future__ import annotations

import base64
import time
from typing import Any

VERDICT_TIMEOUT_MS = 180_000  # a busy 2-core machine runs the pipeline slowly; this is a deadline, not a measure

# Watches the upload and job-progress labels and records every text they show, so a test can check the
# progress a person saw even when the job went fast.
RECORD_PROGRESS = """
() => {
  window.__progressLog = [];
  const record = () => {
    const upload = document.getElementById("upload-panel");
    const job = document.getElementById("progress-panel");
    if (!upload.hidden) window.__progressLog.push(`upload: ${document.getElementById("upload-label").textContent}`);
    if (!job.hidden && !document.getElementById("view-job").hidden) {
      window.__progressLog.push(`job: ${document.getElementById("progress-label").textContent}`);
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}
"""

DROP_FILE = """
([name, type, encoded]) => {
  const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  const zone = document.getElementById("dropzone");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}
"""


def sign_in(page: Any, key: str) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#view-new:not([hidden])")


def drop_file(page: Any, name: str, content_type: str, data: bytes) -> float:
    """Drop `data` on the drop zone as a real DragEvent with a File; returns the monotonic time of the drop."""
    page.evaluate(RECORD_PROGRESS)
    dropped_at = time.monotonic()
    page.evaluate(DROP_FILE, [name, content_type, base64.b64encode(data).decode()])
    return dropped_at


def wait_for_verdict(page: Any) -> str:
    badge = page.wait_for_selector("#verdict-badge", timeout=VERDICT_TIMEOUT_MS)
    return badge.get_attribute("data-verdict")


def current_job_id(page: Any) -> str:
    page.wait_for_url("**/console#/jobs/*")
    return page.url.rsplit("/", 1)[1]


def progress_log(page: Any) -> list[str]:
    return page.evaluate("() => window.__progressLog || []")


def image_loaded(page: Any, selector: str) -> bool:
    """The <img> shows a decoded picture from a blob: URL (what the console makes of the API's PNG)."""
    return page.eval_on_selector(
        selector, "(img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:')"
    )


def horizontal_overflow(page: Any) -> int:
    """Pixels the page is wider than the viewport (0 when nothing needs sideways scrolling)."""
    return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")


def overflowing_elements(page: Any) -> list[str]:
    """The elements wider than the viewport (for the failure message of a phone-width check)."""
    return page.evaluate(
        """() => [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .slice(0, 8)
            .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className} ${el.getBoundingClientRect().right}`)"""
    )


def refresh_deliveries_until(page: Any, more_than: int, timeout_s: float = 120.0) -> int:
    """Press "Refresh" on the webhook log until it lists more than `more_than` attempts; returns the count.

    The receiver has the request before the worker records the attempt, so the log may lag a moment behind.
    """
    deadline = time.monotonic() + timeout_s
    rows = "() => document.querySelectorAll('#deliveries-table tbody tr').length"
    while True:
        page.click("#deliveries-refresh")
        try:
            page.wait_for_function(f"() => ({rows})() > {more_than}", timeout=2_000)
            return page.evaluate(rows)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: not yet, press again
            if time.monotonic() > deadline:
                raise AssertionError(f"the webhook log still lists {page.evaluate(rows)} attempt(s)") from None
