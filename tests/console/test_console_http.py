"""The console as HTTP sees it: where it is served, its security headers, that its page holds no inline script, and
the heatmap route it added to the public API (authenticated, documented, problem+json on errors)."""

from __future__ import annotations

import re

import httpx

from tests.stack.gateway_support import Gateway, assert_problem

REQUIRED_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' blob: data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
}


def _csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in (p.strip() for p in policy.split(";")) if part}


def test_root_redirects_to_the_console(console_gateway: Gateway) -> None:
    response = httpx.get(console_gateway.url + "/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/console"


def test_console_page_has_a_strict_policy_and_no_inline_script(console_gateway: Gateway) -> None:
    response = httpx.get(console_gateway.url + "/console")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = _csp(response)
    for directive, value in REQUIRED_CSP.items():
        assert policy.get(directive) == value, (directive, policy)
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", response.text, flags=re.S)
    assert scripts, "the page loads its modules"
    for attributes, body in scripts:
        assert 'src="/console/assets/' in attributes and not body.strip(), attributes
    assert not re.search(r"\son[a-z]+=", response.text), "no inline event handlers"
    assert "style=" not in response.text
    assert not re.search(r"(src|href)=\"(https?:)?//", response.text), "no third-party origin"


def test_assets_are_served_with_the_same_headers(console_gateway: Gateway) -> None:
    for path, content_type in (
        ("/console/assets/js/app.js", "javascript"),
        ("/console/assets/console.css", "text/css"),
        ("/console/assets/vendor/chartjs/chart.umd.min.js", "javascript"),
        ("/console/assets/vendor/chartjs/LICENSE.md", "markdown"),
    ):
        response = httpx.get(console_gateway.url + path)
        assert response.status_code == 200, path
        assert content_type in response.headers["content-type"], (path, response.headers["content-type"])
        assert _csp(response)["script-src"] == "'self'"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(console_gateway.url + "/console/assets/../main.py").status_code == 404


def test_api_responses_are_not_given_the_console_policy(console_gateway: Gateway) -> None:
    response = httpx.get(console_gateway.url + "/healthz")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_heatmap_route_needs_a_key_and_a_known_job(console_gateway: Gateway) -> None:
    path = "/v1/jobs/nope/tracks/0/heatmaps/0"
    assert_problem(httpx.get(console_gateway.url + path), 401, "unauthorized")
    with console_gateway.client("video") as client:
        assert_problem(client.get(path), 404, "job_not_found")
        assert_problem(client.get(path, params={"kind": "elsewhere"}), 422, "validation_error")


def test_openapi_documents_the_heatmap_route_and_not_the_pages(console_gateway: Gateway) -> None:
    paths = httpx.get(console_gateway.url + "/openapi.json").json()["paths"]
    route = paths["/v1/jobs/{job_id}/tracks/{track_id}/heatmaps/{frame_index}"]["get"]
    assert "image/png" in route["responses"]["200"]["content"]
    assert route["security"], "authenticated like every /v1 route"
    assert "/console" not in paths and "/" not in paths
