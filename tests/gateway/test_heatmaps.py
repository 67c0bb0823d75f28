"""`GET /v1/jobs/{id}/tracks/{track}/heatmaps/{frame}`: the PNG a result's heatmap links to, from the gateway's own
origin, and its problems (a frame without that heatmap has its own code)."""

from __future__ import annotations

import httpx

from tests.stack.gateway_support import Gateway, assert_problem, submit_file, wait_terminal


def test_a_heatmap_is_served_as_its_presigned_url_serves_it_and_a_missing_one_is_heatmap_not_found(
    gateway: Gateway, photo_bytes: bytes
) -> None:
    with gateway.client("alpha") as client:
        submitted = submit_file(client, photo_bytes, sampling="uniform:4")
        assert submitted.status_code == 202, submitted.text
        job = wait_terminal(client, submitted.json()["id"])
        assert job["status"] == "succeeded", job
        tracks = client.get(f"/v1/jobs/{job['id']}/result").json()["tracks"]
        track = next(track for track in tracks if track["heatmaps"])
        heatmap = track["heatmaps"][0]
        path = f"/v1/jobs/{job['id']}/tracks/{track['track_id']}/heatmaps"

        png = client.get(f"{path}/{heatmap['frame_index']}", params={"kind": heatmap["kind"]})
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.content == httpx.get(heatmap["ref"]).content

        missing = client.get(f"{path}/999999", params={"kind": heatmap["kind"]})
        problem = assert_problem(missing, 404, "heatmap_not_found")
        assert "tracks[].heatmaps" in problem["detail"]

        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 200
        assert_problem(client.get(f"{path}/{heatmap['frame_index']}"), 404, "job_not_found")
