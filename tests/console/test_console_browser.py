"""The console in Debian's headless chromium against the real local stack: sign in, drop the sample clip, watch its
progress, read the verdict, open a frame from the chart and see its heatmap, erase the job; a wrong key; a photo
from the file picker; the job list's filters, paging and erase; the webhook log and redelivery; the keyboard.

Every page fails its test on a browser console error, an uncaught exception or a CSP violation (conftest).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
from deepfake_jobs.models import Job, JobOptions, MediaRef, MediaSourceKind

from tests.console.conftest import DESKTOP, PHONE, ConsolePage
from tests.console.console_support import (
    current_job_id,
    drop_file,
    horizontal_overflow,
    image_loaded,
    overflowing_elements,
    progress_log,
    refresh_deliveries_until,
    sign_in,
    wait_for_verdict,
)
from tests.stack.servers import Route

VERDICTS = {"real", "fake", "uncertain", "no_face"}


def test_a_wrong_key_gets_a_clear_message(console_page: ConsolePage, artifacts) -> None:  # noqa: ANN001
    page = console_page.page
    # Chromium itself logs the refused sign-in request; that one line is expected, nothing else is.
    console_page.log.allowed.append("the server responded with a status of 401 (Unauthorized)")
    page.goto("/")
    assert page.url.endswith("/console")
    page.get_by_label("API key").fill("df_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.wait_for_selector("#signin-error:not([hidden])")
    assert "not accepted" in error.inner_text()
    assert page.is_hidden("#view-new")
    assert page.evaluate("() => sessionStorage.length") == 0, "a refused key is not kept"
    page.set_viewport_size(PHONE)
    page.wait_for_function(f"() => document.documentElement.clientWidth === {PHONE['width']}")
    assert horizontal_overflow(page) == 0, overflowing_elements(page)
    page.screenshot(path=str(artifacts / "signin-wrong-key-phone.png"), full_page=True)


def test_video_from_drop_to_verdict_then_heatmap_then_erase(
    console_page: ConsolePage, short_clip: bytes, artifacts
) -> None:  # noqa: ANN001
    page, gateway = console_page.page, console_page.gateway
    sign_in(page, gateway.key("video"))
    assert page.evaluate("() => Object.keys(sessionStorage)") == ["deepfake-console-api-key"]

    dropped_at = drop_file(page, "sample-clip.mp4", "video/mp4", short_clip)
    job_id = current_job_id(page)
    verdict = wait_for_verdict(page)
    seconds = time.monotonic() - dropped_at
    print(f"\nconsole: drop to verdict for the sample clip ({len(short_clip)} bytes): {seconds:.2f} s")

    assert verdict in VERDICTS
    seen = progress_log(page)
    assert any(entry.startswith("upload: Uploading sample-clip.mp4") for entry in seen), seen
    assert any(entry.startswith(("job: Queued", "job: Processing")) for entry in seen), seen
    assert page.inner_text("#verdict-badge") in {"Real", "Fake", "Uncertain", "No face"}
    assert "Confidence" in page.inner_text("#confidence")
    assert page.inner_text("#verdict-meaning")
    facts = page.inner_text("#result-panel")
    for shown in ("Sampling used", "uniform:6", "Frames sampled", "Time per stage", "Model"):
        assert shown in facts, shown

    # A point of the chart that has a heatmap (drawn larger), clicked where Chart.js drew it.
    page.locator("#score-chart").scroll_into_view_if_needed()
    point = page.evaluate(
        """() => {
          const chart = Chart.getChart("score-chart");
          const index = chart.data.datasets.findIndex((dataset) => !dataset.isThreshold);
          const dataset = chart.data.datasets[index];
          const at = dataset.pointRadius.indexOf(6);
          const element = chart.getDatasetMeta(index).data[at];
          const box = chart.canvas.getBoundingClientRect();
          return { x: box.left + element.x, y: box.top + element.y, frame: dataset.data[at].frameIndex };
        }"""
    )
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector(f"#frame-viewer[data-frame='{point['frame']}']:not([hidden])")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=page.query_selector("#frame-image"))
    assert image_loaded(page, "#frame-image")
    assert f"frame {point['frame']}" in page.inner_text("#frame-caption")
    page.wait_for_function("() => [...document.querySelectorAll('img.gallery-image')].every((i) => i.naturalWidth > 0)")
    assert page.locator("img.gallery-image").count() >= 1

    with page.expect_download() as download_info:
        page.click("#download-json")
    document = json.loads(download_info.value.path().read_text())
    assert document["job_id"] == job_id and document["verdict"] == verdict

    assert "no webhook URL" in page.inner_text("#deliveries-summary")
    page.screenshot(path=str(artifacts / "result-video-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_function(f"() => document.documentElement.clientWidth === {PHONE['width']}")
    assert horizontal_overflow(page) == 0, overflowing_elements(page)
    page.screenshot(path=str(artifacts / "result-video-phone.png"), full_page=True)

    page.click("a[href='#/jobs']")
    row = page.wait_for_selector(f"tr[data-job='{job_id}']")
    row.query_selector("button.erase").click()
    page.wait_for_selector("#confirm-dialog[open]")
    page.click("#confirm-yes")
    page.wait_for_selector(f"tr[data-job='{job_id}']", state="detached")
    with gateway.client("video") as client:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_photo_from_the_file_picker_at_phone_width(console_page: ConsolePage, photo_bytes: bytes, artifacts) -> None:  # noqa: ANN001
    page, gateway = console_page.page, console_page.gateway
    page.set_viewport_size(PHONE)
    sign_in(page, gateway.key("photo"))
    assert horizontal_overflow(page) == 0, overflowing_elements(page)
    page.screenshot(path=str(artifacts / "upload-phone.png"), full_page=True)
    page.set_input_files("#file-input", files=[{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": photo_bytes}])
    current_job_id(page)
    assert wait_for_verdict(page) in VERDICTS
    assert page.locator("#score-chart").count() == 0, "photos have no per-frame chart"
    text = page.inner_text("#result-panel")
    assert "image" in text and "null" not in text and "undefined" not in text
    assert page.locator("img.gallery-image").count() >= 1, "the photo's faces have heatmaps (explain is on)"
    page.wait_for_function("() => [...document.querySelectorAll('img.gallery-image')].every((i) => i.naturalWidth > 0)")
    page.wait_for_selector("#frame-viewer:not([hidden])")  # the most suspicious face's heatmap over the photo
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=page.query_selector("#frame-image"))
    assert image_loaded(page, "#frame-image")
    assert horizontal_overflow(page) == 0, overflowing_elements(page)
    page.screenshot(path=str(artifacts / "result-photo-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.wait_for_function(f"() => document.documentElement.clientWidth === {DESKTOP['width']}")
    page.screenshot(path=str(artifacts / "result-photo-desktop.png"), full_page=True)


def test_job_list_filters_pages_and_erases(console_page: ConsolePage, job_store, artifacts) -> None:  # noqa: ANN001
    page, gateway = console_page.page, console_page.gateway
    tenant = gateway.tenant_ids["lister"]
    names = [f"queued-{index:02d}-{uuid.uuid4().hex[:4]}.jpg" for index in range(11)]
    for name in names:  # queued jobs no worker will see: the list is what is tested, not the pipeline
        job_store.create(
            Job(tenant_id=tenant, media=MediaRef(source=MediaSourceKind.UPLOAD, filename=name), options=JobOptions())
        )
    sign_in(page, gateway.key("lister"))
    page.click("a[href='#/jobs']")
    page.select_option("#filter-size", "10")
    page.select_option("#filter-status", "queued")
    page.click("#jobs-filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 10")
    assert page.is_enabled("#page-next") and page.is_disabled("#page-previous")
    page.click("#page-next")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 1")
    assert page.inner_text("#jobs-table tbody").find(names[0]) >= 0, "the oldest job is on the second page"

    page.click("#page-first")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 10")
    page.select_option("#filter-verdict", "fake")
    page.click("#jobs-filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 0")
    page.select_option("#filter-verdict", "")
    page.fill("#filter-to", "2000-01-01")
    page.click("#jobs-filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 0")
    page.fill("#filter-to", "")
    page.click("#jobs-filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 10")

    page.screenshot(path=str(artifacts / "jobs-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_function(f"() => document.documentElement.clientWidth === {PHONE['width']}")
    assert horizontal_overflow(page) == 0, overflowing_elements(page)
    page.screenshot(path=str(artifacts / "jobs-phone.png"), full_page=True)
    newest = page.get_attribute("#jobs-table tbody tr", "data-job")
    page.click(f"tr[data-job='{newest}'] button.erase")
    page.click("#confirm-no")  # keep it: nothing happens
    assert page.locator(f"tr[data-job='{newest}']").count() == 1
    page.click(f"tr[data-job='{newest}'] button.erase")
    page.click("#confirm-yes")
    page.wait_for_selector(f"tr[data-job='{newest}']", state="detached")
    assert job_store.get(newest) is None or job_store.get(newest).status.value == "canceled"
    with gateway.client("lister") as client:
        assert client.get(f"/v1/jobs/{newest}").status_code == 404


def test_media_url_with_webhook_log_and_redelivery(console_page: ConsolePage, http_server, photo_bytes: bytes) -> None:  # noqa: ANN001
    page, gateway = console_page.page, console_page.gateway
    media = http_server.add(f"/media/{uuid.uuid4().hex}.jpg", Route(body=photo_bytes, content_type="image/jpeg"))
    hook_path = f"/hooks/console-{uuid.uuid4().hex[:8]}"
    callback = http_server.add(hook_path, Route(status=204))
    sign_in(page, gateway.key("hooks"))
    page.click("details.options summary")
    page.get_by_label("Webhook URL (optional)").fill(callback)
    page.get_by_label("Or the URL of a photo or video").fill(media)
    page.get_by_role("button", name="Analyse URL").click()
    job_id = current_job_id(page)
    assert wait_for_verdict(page) in VERDICTS
    http_server.wait_for(hook_path, count=1, timeout_s=120)
    before = refresh_deliveries_until(page, more_than=0)
    page.click("#redeliver")
    http_server.wait_for(hook_path, count=before + 1, timeout_s=120)
    refresh_deliveries_until(page, more_than=before)
    assert page.is_enabled("#redeliver")
    outcomes = page.eval_on_selector_all("#deliveries-table tbody tr", "(rows) => rows.map((r) => r.dataset.outcome)")
    assert outcomes and set(outcomes) == {"delivered"}, outcomes  # the receiver answers 204 every time
    with gateway.client("hooks") as client:
        log = client.get(f"/v1/jobs/{job_id}/deliveries").json()
    assert len(log["deliveries"]) >= 2


def test_keyboard_only_and_every_control_labelled(console_page: ConsolePage, short_clip: bytes) -> None:
    page, gateway = console_page.page, console_page.gateway
    page.goto("/")
    page.wait_for_selector("#view-signin:not([hidden])")
    assert page.evaluate("() => document.activeElement.id") == "api-key", "the page opens on the key field"
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    assert page.eval_on_selector(".skip-link", "(link) => link.getBoundingClientRect().left >= 0"), "visible on focus"
    page.keyboard.press("Tab")
    page.keyboard.type(gateway.key("keyboard"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-new:not([hidden])")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
            .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    drop_file(page, "sample-clip.mp4", "video/mp4", short_clip)
    wait_for_verdict(page)
    chip = page.locator("button.chip").first
    frame = chip.get_attribute("data-frame")
    chip.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#frame-viewer[data-frame='{frame}']:not([hidden])")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=page.query_selector("#frame-image"))
    nameless = page.evaluate(
        """() => [...document.querySelectorAll("button, a[href]")]
            .filter((el) => !el.hidden && !(el.getAttribute("aria-label") || el.textContent).trim())
            .map((el) => el.outerHTML)"""
    )
    assert nameless == []
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.key('keyboard')}"}) as client:
        png = client.get(f"/v1/jobs/{current_job_id(page)}/tracks/{chip.get_attribute('data-track')}/heatmaps/{frame}")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_cancel_a_job_while_it_waits(console_page: ConsolePage, job_store) -> None:  # noqa: ANN001
    page, gateway = console_page.page, console_page.gateway
    job = Job(  # queued and never dispatched: it waits for as long as the test needs
        tenant_id=gateway.tenant_ids["cancel"],
        media=MediaRef(source=MediaSourceKind.UPLOAD, filename="waiting.mp4"),
        options=JobOptions(),
    )
    job_store.create(job)
    sign_in(page, gateway.key("cancel"))
    page.goto(f"/console#/jobs/{job.id}")
    page.wait_for_selector("#progress-panel[data-status='queued']:not([hidden])")
    assert page.inner_text("#progress-label") == "Queued"
    page.get_by_role("button", name="Cancel and erase").click()
    page.click("#confirm-no")
    assert page.is_visible("#progress-panel"), "keeping the job changes nothing"
    page.get_by_role("button", name="Cancel and erase").click()
    page.click("#confirm-yes")
    page.wait_for_url("**/console#/jobs")
    assert job.id in page.inner_text("#notice")
    with gateway.client("cancel") as client:
        assert client.get(f"/v1/jobs/{job.id}").status_code == 404
