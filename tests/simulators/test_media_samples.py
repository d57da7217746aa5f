"""The generated media files are well-formed, checked by walking their structure."""

from __future__ import annotations

import re
import struct
import zlib

from wabridge.simulators.media_samples import (
    jpeg_8x8_gray,
    mp4_empty_track,
    ogg_opus_silence,
    pdf_one_page,
    png_1x1,
    sample_for,
    webp_1x1,
)


def test_png_chunks_have_valid_crcs_and_the_pixel_decompresses() -> None:
    data = png_1x1()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc
        if kind == b"IDAT":
            assert zlib.decompress(payload) == b"\x00\xff\x00\x00"
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_jpeg_segments_are_well_formed() -> None:
    data = jpeg_8x8_gray()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    offset, markers = 2, []
    while data[offset + 1] != 0xDA:
        marker, length = data[offset + 1], struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        markers.append(marker)
        offset += 2 + length
    assert markers == [0xE0, 0xDB, 0xC0, 0xC4, 0xC4]
    height, width = struct.unpack(">HH", data[data.index(b"\xff\xc0") + 5 : data.index(b"\xff\xc0") + 9])
    assert (height, width) == (8, 8)


def test_webp_riff_sizes_match() -> None:
    data = webp_1x1()
    assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8L"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert data[20] == 0x2F  # VP8L signature byte


def test_ogg_pages_carry_opus_headers_and_sequence() -> None:
    data = ogg_opus_silence()
    pages = [m.start() for m in re.finditer(b"OggS", data)]
    assert len(pages) == 3
    assert [struct.unpack("<I", data[p + 18 : p + 22])[0] for p in pages] == [0, 1, 2]
    assert b"OpusHead" in data[: pages[1]] and b"OpusTags" in data[pages[1] : pages[2]]
    assert data[pages[2] + 5] & 0x04  # end of stream on the last page


def test_mp4_boxes_nest_to_the_end_of_the_file() -> None:
    data = mp4_empty_track()
    offset, boxes = 0, []
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append(kind)
        offset += size
    assert offset == len(data) and boxes == [b"ftyp", b"moov", b"mdat"]


def test_pdf_cross_reference_offsets_point_at_their_objects() -> None:
    data = pdf_one_page()
    xref_at = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert data[xref_at:].startswith(b"xref")
    offsets = [int(line[:10]) for line in data[xref_at:].split(b"\n")[3:8]]
    for number, offset in enumerate(offsets, start=1):
        assert data[offset:].startswith(f"{number} 0 obj".encode())


def test_every_media_kind_has_a_sample_with_its_mime_type() -> None:
    assert {
        kind: sample_for(kind).mime_type for kind in ("image", "video", "audio", "voice", "document", "sticker")
    } == {
        "image": "image/jpeg",
        "video": "video/mp4",
        "audio": "audio/ogg",
        "voice": "audio/ogg",
        "document": "application/pdf",
        "sticker": "image/webp",
    }
