"""Checking and decoding image bytes: the one place that turns client bytes into pixels."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import warnings
from collections.abc import Iterator
from functools import cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

RGBImage = NDArray[np.uint8]  # shape (height, width, 3), RGB order

JPEG_MAGIC = b"\xff\xd8\xff"

_EXIF_ORIENTATION = 0x0112

# Our own limit (MAX_IMAGE_PIXELS, checked from the header before decoding) replaces
# Pillow's fixed one, so that the configured value is the one that applies.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """The bytes are not an image this service can process; the message says why."""


def image_key(data: bytes) -> str:
    """The Redis key and output file stem of an image: the SHA-256 hex of its bytes."""
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _image_errors() -> Iterator[None]:
    """Turn whatever Pillow raises for bad bytes into an :class:`ImageError` that says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("image_data is not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"image is too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"image_data could not be decoded (truncated or corrupt): {error}") from None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header and check the size; no pixel is decoded yet."""
    if not data:
        raise ImageError("image_data is empty")
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, "
            f"more than the limit of {max_pixels} (MAX_IMAGE_PIXELS)"
        )
    return image


def _reduce_while_decoding(image: Image.Image, min_side: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale while its longer side stays >= min_side."""
    width, height = image.size
    if image.format == "JPEG" and max(width, height) > min_side:
        factor = min_side / max(width, height)
        image.draft("RGB", (math.ceil(width * factor), math.ceil(height * factor)))


def decode_image(data: bytes, max_pixels: int) -> RGBImage:
    """Decode image bytes into an upright RGB array at full size.

    EXIF orientation is applied, so boxes refer to the image as a person sees it. The
    first frame of an animation is used. Raises :class:`ImageError` for empty,
    unreadable, truncated or oversized input (more than ``max_pixels`` pixels, checked
    from the header before any pixel is decoded).
    """
    return decode_reduced(data, max_pixels, min_side=0)[0]


def decode_reduced(data: bytes, max_pixels: int, min_side: int) -> tuple[RGBImage, float]:
    """Like :func:`decode_image`, but a large JPEG may decode smaller (its longer side at
    least ``min_side``; 0 means full size), which is several times faster.

    Returns the image and the factor from its coordinates to the full-size upright image.
    """
    with _image_errors():
        image = _open(data, max_pixels)
        full_width = image.size[0]
        if min_side:
            _reduce_while_decoding(image, min_side)
        reduced_width = image.size[0]
        pixels = _decode_plain_jpeg(data, image, full_width)
        if pixels is not None:
            return pixels, full_width / reduced_width
        image.load()  # the first frame of an animation
        # In place: without an EXIF rotation nothing is copied.
        ImageOps.exif_transpose(image, in_place=True)
        rgb = image if image.mode == "RGB" else _to_rgb(image)
    return np.asarray(rgb, dtype=np.uint8), full_width / reduced_width


def _decode_plain_jpeg(data: bytes, image: Image.Image, full_width: int) -> RGBImage | None:
    """A colour JPEG with no EXIF rotation, decoded by OpenCV straight into an array at the
    scale ``image`` was drafted to (the same libjpeg-turbo pixels as Pillow's, without
    Pillow's copy into NumPy); ``None`` for anything else, which Pillow decodes."""
    factor = round(full_width / image.size[0])
    flags = _opencv_rgb_flags()
    if (image.format != "JPEG" or image.mode != "RGB" or factor not in flags
            or image.getexif().get(_EXIF_ORIENTATION, 1) != 1):
        return None
    import cv2  # here, not above: the facade only checks images and stays free of OpenCV

    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags[factor])
    if pixels is None:
        raise ImageError("image_data could not be decoded (truncated or corrupt)")
    if pixels.shape[1::-1] != image.size:
        return None  # a scale OpenCV rounds differently: let Pillow decode it
    return pixels


@cache
def _opencv_rgb_flags() -> dict[int, int]:
    """OpenCV's flags to decode a JPEG at 1/1, 1/2, 1/4 or 1/8 scale straight into RGB
    order, leaving EXIF orientation alone (only unrotated JPEGs come this way)."""
    import cv2

    reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    rgb = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    return {1: rgb, **{factor: (flag & ~cv2.IMREAD_COLOR) | rgb for factor, flag in reduced.items()}}


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height as stored (before any EXIF rotation), read from the header only;
    raises :class:`ImageError` like :func:`decode_image`."""
    with _image_errors():
        return _open(data, max_pixels).size


def check_image(data: bytes, max_pixels: int) -> None:
    """Raise :class:`ImageError` unless ``data`` decodes completely as an image.

    Every byte is decoded (a truncated file fails), but a JPEG at 1/8 scale: several
    times cheaper than :func:`decode_image`.
    """
    with _image_errors():
        image = _open(data, max_pixels)
        _reduce_while_decoding(image, 1)
        image.load()


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode; high bit-depth gray is scaled down, not clipped to white."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        full_scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        gray = np.clip(values * (255.0 / full_scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as a viewer shows them on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encode_jpeg(image: RGBImage, quality: int = 95) -> bytes:
    """Encode an RGB array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def as_jpeg(data: bytes, max_pixels: int) -> bytes:
    """The bytes to store as ``<key>.jpg``: JPEG input unchanged, anything else re-encoded."""
    if data.startswith(JPEG_MAGIC):
        return data
    return encode_jpeg(decode_image(data, max_pixels))
