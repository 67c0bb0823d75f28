"""Recognising uploads by content: every accepted format, and refusals that name what was sent."""

from __future__ import annotations

import random

import pytest
from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.media.sniff import SNIFF_BYTES, sniff_format
from deepfake_core.result import MediaType

from tests.utils.media_factory import (
    encode_image,
    ftyp_then_random,
    pdf_document,
    photo,
    sample_clip,
    zip_archive,
)

VIDEO_KINDS = ("mp4", "mov", "webm", "mkv", "avi")
IMAGE_KINDS = ("jpeg", "png", "webp", "bmp")


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_images_are_recognised_by_their_bytes(media_dir, kind):
    head = encode_image(photo(64), kind)[:SNIFF_BYTES]

    assert sniff_format(head) == (MediaType.IMAGE, kind)


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_videos_are_recognised_by_their_bytes(kind):
    head = sample_clip(kind).read_bytes()[:SNIFF_BYTES]

    assert sniff_format(head) == (MediaType.VIDEO, kind)


def test_real_downloads_are_recognised(media_dir):
    assert sniff_format((media_dir / "franck.mp4").read_bytes()[:SNIFF_BYTES]) == (MediaType.VIDEO, "mp4")
    assert sniff_format((media_dir / "sample1.jpg").read_bytes()[:SNIFF_BYTES]) == (MediaType.IMAGE, "jpeg")
    assert sniff_format((media_dir / "astronaut.png").read_bytes()[:SNIFF_BYTES]) == (MediaType.IMAGE, "png")


def test_a_quicktime_brand_that_is_not_the_major_brand_still_means_mp4():
    # 3GPP and M4V files list 'isom' among compatible brands; only a QuickTime major brand makes a MOV.
    head = b"\x00\x00\x00\x1cftyp3gp4\x00\x00\x02\x00isom3gp4qt  " + bytes(64)

    assert sniff_format(head) == (MediaType.VIDEO, "mp4")


def test_webm_and_matroska_are_told_apart_by_doctype():
    webm = sample_clip("webm").read_bytes()[:SNIFF_BYTES]
    mkv = sample_clip("mkv").read_bytes()[:SNIFF_BYTES]

    assert webm[:4] == mkv[:4]  # the same EBML magic number
    assert sniff_format(webm)[1] == "webm" and sniff_format(mkv)[1] == "mkv"


def test_zero_bytes_is_an_empty_file():
    with pytest.raises(DetectionError) as caught:
        sniff_format(b"")

    assert caught.value.code is ErrorCode.EMPTY_FILE
    assert "empty" in caught.value.message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (pdf_document(), "PDF"),
        (zip_archive(), "ZIP"),
        (b"GIF89a" + bytes(32), "GIF"),
        (b"Just some notes about my video.\n", "text"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
    ],
)
def test_other_formats_are_refused_by_name(data, named):
    with pytest.raises(DetectionError) as caught:
        sniff_format(data[:SNIFF_BYTES])

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA
    assert named in caught.value.message
    for accepted in ("JPEG", "PNG", "WebP", "BMP", "MP4", "MOV", "WebM", "MKV", "AVI"):
        assert accepted in caught.value.message


def test_random_bytes_are_unsupported():
    with pytest.raises(DetectionError) as caught:
        sniff_format(random.Random(3).randbytes(SNIFF_BYTES))

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA


def test_bm_alone_is_not_a_bitmap():
    with pytest.raises(DetectionError) as caught:
        sniff_format(b"BMW owners club newsletter, issue 12\n")

    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA


def test_an_ftyp_header_is_enough_to_be_sniffed_as_mp4():
    # Content checks past the header are the prober's job (see test_media_probe.py).
    assert sniff_format(ftyp_then_random()[:SNIFF_BYTES]) == (MediaType.VIDEO, "mp4")
