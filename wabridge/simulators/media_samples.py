"""Tiny, valid media files built in code, so the simulators serve real bytes without downloads.

Each builder returns a complete file a decoder accepts: a bridge that checks magic bytes, mime types,
sizes or sha256 sees the same kind of bytes it would get from WhatsApp.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MediaSample:
    data: bytes
    mime_type: str
    extension: str


def png_1x1() -> bytes:
    """A 1x1 opaque red PNG (signature, IHDR, IDAT, IEND with correct CRCs)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    scanline = b"\x00" + b"\xff\x00\x00"  # filter type 0, one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanline)) + chunk(b"IEND", b"")


def jpeg_8x8_gray() -> bytes:
    """A baseline JPEG of one flat grey 8x8 block.

    A flat block has only a DC coefficient equal to the predictor (zero difference) and no AC
    coefficients, so the Huffman tables each need a single one-bit code: DC category 0 and AC EOB.
    The entropy-coded data is then the bits ``0`` ``0``, padded with ones.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    jfif = segment(0xE0, b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0))
    quant = segment(0xDB, b"\x00" + bytes([1] * 64))
    frame = segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + bytes([1, 0x11, 0]))
    one_code_of_length_one = bytes([1] + [0] * 15)
    dc_table = segment(0xC4, b"\x00" + one_code_of_length_one + b"\x00")
    ac_table = segment(0xC4, b"\x10" + one_code_of_length_one + b"\x00")
    scan = segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
    return b"\xff\xd8" + jfif + quant + frame + dc_table + ac_table + scan + b"\x3f" + b"\xff\xd9"


def webp_1x1() -> bytes:
    """A 1x1 lossless WebP: RIFF container around a VP8L bitstream (the image browsers use to
    detect lossless WebP support)."""
    vp8l = b"\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
    chunk = b"VP8L" + struct.pack("<I", len(vp8l) - 1) + vp8l  # 13-byte payload + pad byte
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _ogg_crc(data: bytes) -> int:
    # Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0 (unlike zlib.crc32).
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packet: bytes, *, serial: int, sequence: int, granule: int, header_type: int) -> bytes:
    lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, header_type, granule, serial, sequence, 0, len(lacing)) + bytes(
        lacing
    )
    page = header + packet
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


def ogg_opus_silence() -> bytes:
    """An Ogg Opus file of 20 ms silence, as WhatsApp voice notes are Ogg Opus."""
    serial = 0x5741  # any stream serial number
    opus_head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    opus_tags = b"OpusTags" + struct.pack("<I", 8) + b"wabridge" + struct.pack("<I", 0)
    silence_frame = b"\xf8\xff\xfe"  # TOC: CELT fullband 20 ms, one frame; then a silent frame
    return (
        _ogg_page(opus_head, serial=serial, sequence=0, granule=0, header_type=0x02)
        + _ogg_page(opus_tags, serial=serial, sequence=1, granule=0, header_type=0x00)
        + _ogg_page(silence_frame, serial=serial, sequence=2, granule=312 + 960, header_type=0x04)
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def _full_box(kind: bytes, payload: bytes, *, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def mp4_empty_track() -> bytes:
    """An ISO base media (MP4) file with one video track and an empty sample table.

    Structurally complete (ftyp, moov/mvhd/trak/tkhd/mdia/minf/stbl, mdat); enough for a bridge that
    checks the container, sniffs the mime type or forwards the bytes.
    """
    identity_matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _full_box(
        b"mvhd",
        struct.pack(">IIII", 0, 0, 1000, 0)
        + struct.pack(">IH", 0x10000, 0x100)
        + bytes(10)
        + identity_matrix
        + bytes(24)
        + struct.pack(">I", 2),
    )
    tkhd = _full_box(
        b"tkhd",
        struct.pack(">IIIII", 0, 0, 1, 0, 0)
        + bytes(8)
        + struct.pack(">hhHH", 0, 0, 0, 0)
        + identity_matrix
        + struct.pack(">II", 16 << 16, 16 << 16),
        flags=0x3,
    )
    mdhd = _full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 1000, 0, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", struct.pack(">I4s", 0, b"vide") + bytes(12) + b"VideoHandler\x00")
    vmhd = _full_box(b"vmhd", bytes(8), flags=1)
    dinf = _box(b"dinf", _full_box(b"dref", struct.pack(">I", 1) + _full_box(b"url ", b"", flags=1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", struct.pack(">I", 0))
        + _full_box(b"stts", struct.pack(">I", 0))
        + _full_box(b"stsc", struct.pack(">I", 0))
        + _full_box(b"stsz", struct.pack(">II", 0, 0))
        + _full_box(b"stco", struct.pack(">I", 0)),
    )
    mdia = _box(b"mdia", mdhd + hdlr + _box(b"minf", vmhd + dinf + stbl))
    moov = _box(b"moov", mvhd + _box(b"trak", tkhd + mdia))
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
    return ftyp + moov + _box(b"mdat", b"")


def pdf_one_page(text: str = "wabridge") -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    safe_text = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 20 40 Td ({safe_text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 80] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def sample_for(kind: str) -> MediaSample:
    """The sample a WhatsApp message of this kind carries (``voice`` is an audio note)."""
    if kind == "image":
        return MediaSample(jpeg_8x8_gray(), "image/jpeg", "jpg")
    if kind == "image_png":
        return MediaSample(png_1x1(), "image/png", "png")
    if kind == "sticker":
        return MediaSample(webp_1x1(), "image/webp", "webp")
    if kind in ("audio", "voice"):
        return MediaSample(ogg_opus_silence(), "audio/ogg", "ogg")
    if kind == "video":
        return MediaSample(mp4_empty_track(), "video/mp4", "mp4")
    if kind == "document":
        return MediaSample(pdf_one_page(), "application/pdf", "pdf")
    raise ValueError(f"no media sample for {kind!r}")
