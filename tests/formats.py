"""Test inputs: one photo in every format and shape the service must handle or refuse."""

from __future__ import annotations

import io
import zlib
import struct

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def accepted_variants(jpeg: bytes) -> dict[str, bytes]:
    """The same photo in each format the service accepts (same faces in each)."""
    with Image.open(io.BytesIO(jpeg)) as original:
        image = original.convert("RGB")
    gray16 = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    rgba = image.convert("RGBA")
    second_frame = Image.new("RGB", image.size, (0, 0, 0))
    return {
        "grayscale-jpeg": encode(image.convert("L"), "JPEG", quality=92),
        "cmyk-jpeg": encode(image.convert("CMYK"), "JPEG", quality=92),
        "png-16-bit": encode(gray16, "PNG"),
        "png-alpha": encode(rgba, "PNG"),
        "gif-palette": encode(image.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "gif-animated": encode(image.convert("P"), "GIF", save_all=True, append_images=[second_frame.convert("P")], duration=100),
        "webp": encode(image, "WEBP", quality=90),
        "tiff": encode(image, "TIFF"),
        "bmp": encode(image, "BMP"),
    }


def exif_rotated(jpeg: bytes) -> bytes:
    """The photo stored turned on its side, with EXIF orientation 6 ("rotate 90° CW to view")."""
    with Image.open(io.BytesIO(jpeg)) as original:
        sideways = original.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # 90° counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(sideways, "JPEG", quality=92, exif=exif.tobytes())


def one_pixel() -> bytes:
    return encode(Image.new("RGB", (1, 1), (120, 80, 40)), "PNG")


def header_with_garbage(jpeg: bytes) -> bytes:
    """A real JPEG header followed by random bytes."""
    rng = np.random.default_rng(7)
    return jpeg[:600] + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()


def png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A small PNG (a few hundred KB) that decodes to width x height gray pixels."""
    row = b"\x00" + b"\x00" * width  # filter byte + pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
