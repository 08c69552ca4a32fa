"""Images for the browser: thumbnails resized with Pillow, colourised masks, and placeholders.

Every function returns PNG or JPEG bytes; none raises on a bad image: a source that cannot be read
or decoded becomes a placeholder that says why, so one broken frame never breaks a page.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

#: Widest thumbnail the server makes; a larger request gets the image at this width.
MAX_WIDTH = 4096

#: Distinct colours (RGB) given to mask labels in the order the version lists them.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def _bounded(width: int) -> int:
    return max(16, min(int(width), MAX_WIDTH))


def placeholder(reason: str, width: int = 256, height: int | None = None) -> bytes:
    """A grey PNG saying why an image is missing (``reason`` wrapped to fit)."""
    width = _bounded(width)
    height = height or max(16, width * 3 // 4)
    image = Image.new("RGB", (width, height), (68, 72, 80))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(120, 124, 132))
    lines = textwrap.wrap(reason, width=max(8, width // 7))[: max(1, height // 14 - 1)]
    draw.multiline_text((6, 6), "\n".join(lines), fill=(225, 225, 225), spacing=3)
    return _png(image)


def _open(data: bytes) -> Image.Image | str:
    """The decoded image, or why it could not be decoded."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"not an image Pillow can read: {exc}"
    return image


def thumbnail(data: bytes, width: int) -> tuple[bytes, str]:
    """Return ``(bytes, content type)``: the image scaled to ``width`` pixels wide (never enlarged).

    JPEG for opaque images, PNG for images with transparency; a placeholder PNG when ``data`` is
    not an image.
    """
    image = _open(data)
    if isinstance(image, str):
        return placeholder(image, width), "image/png"
    width = _bounded(width)
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return _png(image.convert("RGBA")), "image/png"
    return _jpeg(image), "image/jpeg"


def colour_mask(
    data: bytes, values: Sequence[tuple[int, int, int]], width: int, alpha: int = 140
) -> tuple[bytes, str]:
    """Return a transparent PNG where each pixel equal to ``values[i]`` gets ``PALETTE[i]``.

    Pixels of no listed value are transparent; with no values, every non-black pixel is drawn in
    the first colour. Scaled to ``width`` with nearest-neighbour sampling (values stay exact).
    """
    image = _open(data)
    if isinstance(image, str):
        return placeholder(image, width), "image/png"
    width = _bounded(width)
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.NEAREST)
    rgb = np.asarray(image.convert("RGB"))
    out = np.zeros((*rgb.shape[:2], 4), dtype=np.uint8)
    if not values:
        hit = rgb.any(axis=2)
        out[hit] = (*PALETTE[0], alpha)
    for i, value in enumerate(values):
        hit = np.all(rgb == np.asarray(value, dtype=np.uint8), axis=2)
        out[hit] = (*PALETTE[i % len(PALETTE)], alpha)
    return _png(Image.fromarray(out, "RGBA")), "image/png"


__all__ = ["MAX_WIDTH", "PALETTE", "colour_mask", "placeholder", "thumbnail"]
