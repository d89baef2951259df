"""Decoding and checking image bytes (no broker)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from tasks.shared import imaging
from tasks.shared.imaging import ImageError, as_jpeg, check_image, decode_image, decode_reduced, image_key

LIMIT = 50_000_000


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_key_is_sha256_of_the_bytes(t1_bytes: bytes) -> None:
    assert image_key(t1_bytes) == hashlib.sha256(t1_bytes).hexdigest()
    assert len(image_key(b"x")) == 64


def test_decodes_jpeg_to_rgb(t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes, LIMIT)
    assert image.shape == (886, 1280, 3)
    assert image.dtype == np.uint8


def test_decodes_png_with_alpha_and_grayscale() -> None:
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent
    decoded = decode_image(encode(rgba, "PNG"), LIMIT)
    assert decoded[0, 0].tolist() == [200, 0, 0]
    assert decoded[0, 29].tolist() == [255, 255, 255]
    gray = np.full((20, 30), 77, dtype=np.uint8)
    assert decode_image(encode(gray, "PNG"), LIMIT)[0, 0].tolist() == [77, 77, 77]


def test_applies_exif_rotation() -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(pixels, "JPEG", exif=exif.tobytes())
    assert decode_image(data, LIMIT).shape == (40, 20, 3)


def test_exif_rotation_moves_the_pixels_and_no_rotation_keeps_them() -> None:
    pixels = np.zeros((24, 48, 3), dtype=np.uint8)
    pixels[:8, :8] = 255  # a white block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: that corner is then top-right
    shown = decode_image(encode(pixels, "JPEG", exif=exif.tobytes(), quality=95), LIMIT)
    assert shown[:8, -8:].mean() > 200 and shown[:8, :8].mean() < 50
    as_stored = decode_image(encode(pixels, "JPEG", quality=95), LIMIT)
    assert as_stored.shape == (24, 48, 3)
    assert as_stored[:8, :8].mean() > 200 and as_stored[:8, -8:].mean() < 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01definitely not an image" * 10, "not a recognised image"),
    ],
)
def test_rejects_non_images(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data, LIMIT)


def test_rejects_truncated_jpeg(t1_bytes: bytes) -> None:
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(t1_bytes[: len(t1_bytes) // 2], LIMIT)


def test_rejects_images_over_the_pixel_limit_before_decoding(t1_bytes: bytes) -> None:
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        decode_image(t1_bytes, 1280 * 886 - 1)


def test_as_jpeg_keeps_jpeg_bytes_and_converts_others(t1_bytes: bytes) -> None:
    assert as_jpeg(t1_bytes, LIMIT) is t1_bytes
    png = encode(np.full((10, 12, 3), 90, dtype=np.uint8), "PNG")
    converted = as_jpeg(png, LIMIT)
    assert converted.startswith(b"\xff\xd8\xff")
    assert Image.open(io.BytesIO(converted)).size == (12, 10)


def test_reduced_decoding_keeps_the_long_side_and_reports_the_scale(t1_bytes: bytes) -> None:
    image, scale = decode_reduced(t1_bytes, LIMIT, min_side=600)
    assert image.shape == (443, 640, 3) and scale == 2.0
    full, one = decode_reduced(t1_bytes, LIMIT, min_side=2000)
    assert full.shape == (886, 1280, 3) and one == 1.0
    png = encode(np.zeros((300, 400, 3), dtype=np.uint8), "PNG")
    assert decode_reduced(png, LIMIT, min_side=100)[0].shape == (300, 400, 3)  # only JPEG reduces


def test_check_image_reads_every_byte(t1_bytes: bytes) -> None:
    check_image(t1_bytes, LIMIT)
    with pytest.raises(ImageError, match="truncated"):
        check_image(t1_bytes[:-2000], LIMIT)
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        check_image(t1_bytes, 1000)


@pytest.mark.parametrize("subsampling, progressive", [(0, False), (2, False), (2, True)])
def test_plain_jpegs_decode_to_pillows_pixels_at_every_scale(
    t1_bytes: bytes, monkeypatch: pytest.MonkeyPatch, subsampling: int, progressive: bool
) -> None:
    """Colour JPEGs without rotation skip Pillow; the networks must see the same pixels."""
    data = encode(np.asarray(Image.open(io.BytesIO(t1_bytes)).convert("RGB")), "JPEG",
                  quality=85, subsampling=subsampling, progressive=progressive)
    fast = [decode_reduced(data, LIMIT, side) for side in (0, 640, 300, 150)]
    monkeypatch.setattr(imaging, "_decode_plain_jpeg", lambda *args: None)
    for side, (pixels, scale) in zip((0, 640, 300, 150), fast, strict=True):
        expected, expected_scale = decode_reduced(data, LIMIT, side)
        assert scale == expected_scale == 1280 / pixels.shape[1]
        assert np.array_equal(pixels, expected)
    assert [scale for _, scale in fast] == [1.0, 2.0, 4.0, 8.0]


def test_plain_jpeg_cut_short_is_rejected_at_reduced_scale_too(t1_bytes: bytes) -> None:
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_reduced(t1_bytes[: len(t1_bytes) // 3], LIMIT, 320)
