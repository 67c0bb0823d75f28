"""Property tests of the request models and the gateway's request parsing: any input is either accepted as a
valid model or refused with the typed error the API turns into a 4xx problem, never another exception.

Covers deepfake_jobs.models (JobOptions, Job), the gateway's SubmitJson and UploadRequest bodies, the
sampling spec, the Idempotency-Key header, job options from form fields, the JSON body reader and the
streaming multipart parser.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.sampling import parse_sampling
from deepfake_gateway.problems import ProblemError
from deepfake_gateway.rest import json_body
from deepfake_gateway.rest.multipart_stream import MultipartError, MultipartStream
from deepfake_gateway.rest.routes.jobs import _options_from_fields
from deepfake_gateway.rest.schemas import SubmitJson, UploadRequest
from deepfake_gateway.submission import check_idempotency_key
from deepfake_jobs.models import MAX_METADATA_BYTES, Job, JobOptions, MediaRef, MediaSourceKind
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.fuzz.budget import CHEAP_EXAMPLES, PARSER_EXAMPLES, count_example, fuzz_settings

pytestmark = pytest.mark.timeout(120)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
SUBMIT_KEYS = ("media_url", "upload_id", "callback_url", "metadata", "priority", "sampling", "explain", "other")
# Bodies near the schema: the real keys with values of any JSON type (more interesting than random objects).
SUBMIT_BODIES = st.dictionaries(st.sampled_from(SUBMIT_KEYS), JSON_VALUES, max_size=6)
SAMPLING_SPECS = st.one_of(
    st.text(max_size=24),
    st.builds(lambda kind, number: f"{kind}:{number}", st.sampled_from(["uniform", "fps", "windows", "x"]),
              st.one_of(st.integers(-5, 10_000), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))),
)  # fmt: skip


@fuzz_settings(CHEAP_EXAMPLES)
@given(body=SUBMIT_BODIES | JSON_VALUES)
def test_submit_json_accepts_or_refuses_with_validation_error(body: Any) -> None:
    count_example("submit_json")
    try:
        payload = SubmitJson.model_validate(body)
    except ValidationError:
        return
    # Accepted: it survives a round trip through its own JSON unchanged.
    assert SubmitJson.model_validate_json(payload.model_dump_json()) == payload
    assert set(body) <= set(SUBMIT_KEYS[:-1])


@fuzz_settings(CHEAP_EXAMPLES)
@given(body=st.dictionaries(st.sampled_from(["filename", "content_type", "x"]), JSON_VALUES, max_size=3))
def test_upload_request_accepts_or_refuses_with_validation_error(body: dict[str, Any]) -> None:
    count_example("upload_request")
    try:
        upload = UploadRequest.model_validate(body)
    except ValidationError:
        return
    assert "/" in upload.content_type and len(upload.content_type) <= 255


@fuzz_settings(CHEAP_EXAMPLES)
@given(metadata=JSON_VALUES, priority=JSON_VALUES, sampling=st.none() | st.text(max_size=20), explain=JSON_VALUES)
def test_job_options_bound_their_metadata(metadata: Any, priority: Any, sampling: str | None, explain: Any) -> None:
    count_example("job_options")
    try:
        options = JobOptions(metadata=metadata, priority=priority, sampling=sampling, explain=explain)
    except ValidationError:
        return
    assert isinstance(options.metadata, dict)
    assert len(json.dumps(options.metadata, default=str)) <= MAX_METADATA_BYTES


@fuzz_settings(CHEAP_EXAMPLES)
@given(
    metadata=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5),
    filename=st.none() | st.text(max_size=300),
    size=st.none() | st.integers(0, 2**40),
)
def test_job_records_round_trip_through_json(metadata: dict[str, Any], filename: str | None, size: int | None) -> None:
    """The store keeps jobs as JSON (Redis and the S3 mirror): what goes in comes back equal."""
    count_example("job_record")
    job = Job(
        tenant_id="tenant",
        media=MediaRef(source=MediaSourceKind.UPLOAD, filename=filename, size_bytes=size),
        options=JobOptions(metadata=metadata) if len(json.dumps(metadata)) <= MAX_METADATA_BYTES else JobOptions(),
    )
    assert Job.model_validate_json(job.model_dump_json()) == job


@fuzz_settings(CHEAP_EXAMPLES)
@given(spec=SAMPLING_SPECS)
def test_sampling_specs_parse_or_refuse_with_invalid_sampling(spec: str) -> None:
    count_example("sampling_spec")
    try:
        parse_sampling(spec)
    except DetectionError as error:
        assert error.code is ErrorCode.INVALID_SAMPLING


@fuzz_settings(CHEAP_EXAMPLES)
@given(spec=SAMPLING_SPECS)
@example(spec="fps:1000000")  # the case the first fuzzing run found
def test_normalised_sampling_specs_parse_again(spec: str) -> None:
    """What the gateway stores (the normalised spec) is what the worker parses: it must parse to the same."""
    count_example("sampling_normalised")
    try:
        strategy = parse_sampling(spec)
    except DetectionError:
        return
    assert parse_sampling(str(strategy)) == strategy


@fuzz_settings(CHEAP_EXAMPLES)
@given(key=st.text(max_size=300))
def test_idempotency_keys_are_printable_or_refused(key: str) -> None:
    count_example("idempotency_key")
    try:
        checked = check_idempotency_key(key)
    except ProblemError as error:
        assert error.code.status == 422
        return
    assert checked is not None and checked.isprintable() and 0 < len(checked) <= 300


GATEWAY_CONTEXT = SimpleNamespace(settings=SimpleNamespace(max_metadata_bytes=MAX_METADATA_BYTES))
FORM_FIELDS = st.dictionaries(
    st.sampled_from(["metadata", "priority", "sampling", "explain", "unknown"]),
    st.text(max_size=40) | JSON_VALUES.map(json.dumps),
    max_size=5,
)


@fuzz_settings(CHEAP_EXAMPLES)
@given(fields=FORM_FIELDS)
def test_multipart_option_fields_give_options_or_a_4xx_problem(fields: dict[str, str]) -> None:
    """Form fields of an upload (no callback_url: that one resolves DNS) become JobOptions or a 4xx problem."""
    count_example("form_fields")
    try:
        options = _options_from_fields(GATEWAY_CONTEXT, fields)  # type: ignore[arg-type]
    except ProblemError as error:
        assert 400 <= error.code.status < 500
        return
    assert isinstance(options, JobOptions)


class _Body:
    """The part of a Starlette request that the JSON reader uses: the body as a stream of chunks."""

    def __init__(self, body: bytes, chunk: int = 4096) -> None:
        self.headers: dict[str, str] = {}
        self._chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def run_coroutine(coroutine: Any) -> Any:
    """asyncio.run in a thread of its own: in a full run, Playwright's sync API (tests/console) keeps an event
    loop running in the main thread, where asyncio.run refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def read_json(body: bytes, limit: int = 64 * 1024) -> Any:
    return run_coroutine(json_body.read_json(_Body(body), limit))


@fuzz_settings(CHEAP_EXAMPLES)
@given(body=st.binary(max_size=2048) | JSON_VALUES.map(lambda value: json.dumps(value).encode()))
def test_json_bodies_parse_or_give_invalid_body(body: bytes) -> None:
    count_example("json_body")
    try:
        read_json(body)
    except ProblemError as error:
        assert error.code.value in ("invalid_body", "body_too_large") and 400 <= error.code.status < 500


@fuzz_settings(20)
@given(depth=st.integers(1_000, 20_000), opener=st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json_gives_invalid_body(depth: int, opener: str) -> None:
    count_example("nested_json_body")
    closer = "]" if opener == "[" else "}"
    body = (opener * depth + "1" + closer * depth).encode()
    try:
        read_json(body, limit=len(body) + 1)
    except ProblemError as error:
        assert error.code.status == 400


BOUNDARY = "fuzzboundary"


def multipart_body(fields: dict[str, str], file_bytes: bytes, filename: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + file_bytes
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """`data` with bytes replaced at (position, value) pairs and optionally truncated at `cut`."""
    mutable = bytearray(data)
    for position, value in edits:
        if mutable:
            mutable[position % len(mutable)] = value
    return bytes(mutable if cut is None else mutable[: cut % (len(mutable) + 1)])


async def parse_multipart(content_type: str, body: bytes, chunk: int) -> tuple[bool, bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    stream = MultipartStream(content_type, chunks(), stall_timeout_s=5)
    found = await stream.find_file()
    data = b""
    if found:
        async for piece in stream.file_chunks():
            data += piece
    await stream.drain()
    return found, data


@fuzz_settings(PARSER_EXAMPLES)
@given(
    fields=st.dictionaries(st.sampled_from(["metadata", "priority", "sampling", "explain"]), st.text(max_size=30)),
    file_bytes=st.binary(max_size=512),
    filename=st.text(max_size=40),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 10_000),
    chunk=st.integers(1, 700),
)
def test_multipart_parser_reads_the_file_or_gives_multipart_error(
    fields: dict[str, str], file_bytes: bytes, filename: str, edits: list[tuple[int, int]], cut: int | None, chunk: int
) -> None:
    """Valid and damaged multipart bodies, split anywhere: the file comes out intact or MultipartError."""
    count_example("multipart_body")
    filename = filename.replace('"', "").replace("\r", "").replace("\n", "")
    original = multipart_body(fields, file_bytes, filename)
    body = mutate(original, edits, cut)
    try:
        found, data = run_coroutine(parse_multipart(f"multipart/form-data; boundary={BOUNDARY}", body, chunk))
    except MultipartError:
        return
    if body == original:
        assert found and data == file_bytes
