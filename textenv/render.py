"""``render_mode="rgb_array"``: the env's text drawn into an image, so Gymnasium's ``RecordVideo``
and stable-baselines3's ``make_vec_env`` (which asks for ``"rgb_array"`` by default) work as they
do on any env. Pillow's built-in bitmap font: no font files, no display."""

from __future__ import annotations

import textwrap

import numpy as np

__all__ = ["text_image"]

COLUMNS = 80  # characters per line
ROWS = 24  # lines kept: the text's end, where the generated tokens are
FONT_PX = 14
LINE_PX = 18
MARGIN_PX = 8
WIDTH_PX = 680


def text_image(text: str) -> np.ndarray:
    """``text`` wrapped to :data:`COLUMNS` characters, its last :data:`ROWS` lines drawn black on
    white: a ``(H, W, 3)`` ``uint8`` array of fixed size (video encoders want every frame alike)."""
    from PIL import Image, ImageDraw, ImageFont

    lines = [w for line in text.splitlines() or [""] for w in textwrap.wrap(line, COLUMNS) or [""]][-ROWS:]
    image = Image.new("RGB", (WIDTH_PX, ROWS * LINE_PX + 2 * MARGIN_PX), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=FONT_PX)  # Pillow >= 10.1 with FreeType: a scalable font
        latin1 = False
    except (TypeError, ImportError, OSError):
        font, latin1 = ImageFont.load_default(), True  # the bitmap font covers Latin-1 only
    for i, line in enumerate(lines):
        if latin1:  # drawn as "?" rather than failing
            line = line.encode("latin-1", "replace").decode("latin-1")
        draw.text((MARGIN_PX, MARGIN_PX + i * LINE_PX), line, fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)
