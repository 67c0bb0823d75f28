"""Recognise an upload by its first bytes (magic numbers), never by its name or declared content type.

The verdict decides which decoder may touch the file, so anything not positively recognised is refused.
"""

from __future__ import annotations

import struct

from deepfake_core.errors import DetectionError, ErrorCode
from deepfake_core.result import MediaType

# Enough for every signature below; the EBML header of WebM/MKV is the longest to parse (< 100 bytes).
SNIFF_BYTES = 4096

ACCEPTED_FORMATS = "JPEG, PNG, WebP or BMP images, or MP4, MOV, WebM, MKV or AVI videos"

# ISO BMFF major brands that mean QuickTime rather than MPEG-4.
_QUICKTIME_BRANDS = {b"qt  "}
# ISO BMFF brands of still images (HEIF/AVIF): same box structure as MP4, but not a video we accept.
_STILL_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
# Legacy QuickTime files may start with these atoms instead of `ftyp`.
_QUICKTIME_FIRST_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
# Sizes of the BMP info headers (BITMAPCOREHEADER ... BITMAPV5HEADER); "BM" alone is too weak a sign.
_BMP_INFO_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = 0x4282

# Formats people often upload by mistake, named in the refusal so that they know what they sent.
_KNOWN_OTHERS = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg file"),
    (b"fLaC", "a FLAC audio file"),
)


def sniff_format(head: bytes) -> tuple[MediaType, str]:
    """Media type and format name ('jpeg', 'png', 'webp', 'bmp', 'mp4', 'mov', 'webm', 'mkv', 'avi').

    `head` is the start of the file; `SNIFF_BYTES` bytes are always enough. Raises DetectionError
    EMPTY_FILE for zero bytes and UNSUPPORTED_MEDIA for anything else that is not recognised.
    """
    if not head:
        raise DetectionError(ErrorCode.EMPTY_FILE, "The file is empty (0 bytes); upload the image or video again.")
    found = _sniff_image(head) or _sniff_video(head)
    if found is None:
        raise DetectionError(ErrorCode.UNSUPPORTED_MEDIA, _unsupported_message(head))
    return found


def _sniff_image(head: bytes) -> tuple[MediaType, str] | None:
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType.IMAGE, "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType.IMAGE, "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] in (b"VP8 ", b"VP8L", b"VP8X"):
        return MediaType.IMAGE, "webp"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_INFO_HEADER_SIZES:
        return MediaType.IMAGE, "bmp"
    return None


def _sniff_video(head: bytes) -> tuple[MediaType, str] | None:
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaType.VIDEO, "avi"
    if head[4:8] == b"ftyp":
        return _sniff_iso_bmff(head)
    if head[4:8] in _QUICKTIME_FIRST_ATOMS and _plausible_atom_size(head):
        return MediaType.VIDEO, "mov"
    if head.startswith(_EBML_MAGIC):
        doctype = _ebml_doctype(head)
        if doctype == "webm":
            return MediaType.VIDEO, "webm"
        if doctype == "matroska":
            return MediaType.VIDEO, "mkv"
    return None


def _plausible_atom_size(head: bytes) -> bool:
    """A binary atom size (0 = to the end, 1 = 64-bit), not the first letters of a text such as 'Set free'."""
    size = struct.unpack(">I", head[:4])[0]
    return size in (0, 1) or 8 <= size < 0x20000000


def _sniff_iso_bmff(head: bytes) -> tuple[MediaType, str] | None:
    """MP4 or MOV from the `ftyp` box: the major brand, else the compatible brands."""
    box_size = struct.unpack(">I", head[:4])[0]
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _STILL_IMAGE_BRANDS:
        return None
    if major in _QUICKTIME_BRANDS or (not major.strip() and compatible & _QUICKTIME_BRANDS):
        return MediaType.VIDEO, "mov"
    return MediaType.VIDEO, "mp4"


def _ebml_doctype(head: bytes) -> str | None:
    """The DocType string of the EBML header ('webm' or 'matroska'); the spec's default is 'matroska'."""
    header = _read_ebml_element(head, 0)
    if header is None or header[0] != 0x1A45DFA3:
        return None
    _, start, end = header
    position, end = start, min(end, len(head))
    while position < end:
        element = _read_ebml_element(head, position)
        if element is None:
            return None
        element_id, data_start, data_end = element
        if element_id == _EBML_DOCTYPE_ID:
            return head[data_start:data_end].rstrip(b"\0").decode("ascii", errors="replace")
        position = data_end
    return "matroska"


def _read_ebml_element(data: bytes, position: int) -> tuple[int, int, int] | None:
    """(id, data start, data end) of the EBML element at `position`, or None if malformed."""
    element_id = _read_vint(data, position, keep_marker=True)
    if element_id is None:
        return None
    value, position = element_id
    size = _read_vint(data, position, keep_marker=False)
    if size is None:
        return None
    length, position = size
    return value, position, position + length


def _read_vint(data: bytes, position: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer: its value and the position after it."""
    if position >= len(data) or data[position] == 0:
        return None
    first = data[position]
    width = 8 - first.bit_length() + 1
    if position + width > len(data):
        return None
    value = first if keep_marker else first & (0xFF >> width)
    for byte in data[position + 1 : position + width]:
        value = (value << 8) | byte
    return value, position + width


def _unsupported_message(head: bytes) -> str:
    what = next((name for magic, name in _KNOWN_OTHERS if head.startswith(magic)), None)
    if what is None and head[4:8] == b"ftyp" and head[8:12] in _STILL_IMAGE_BRANDS:
        what = "a HEIC/AVIF image"
    if what is None and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        what = "a WAV audio file"
    if what is None and _looks_like_text(head):
        what = "a text file"
    described = f"This looks like {what}, which" if what else "The file's content"
    return f"{described} is not a supported format: send {ACCEPTED_FORMATS}."


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\r\n\t" for char in text)
