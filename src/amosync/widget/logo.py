"""The widget's logo images, drawn in pure Python and written as PNG.

amoCRM wants six logo files of fixed pixel sizes in the archive's `images/` folder. They are
committed under `widget/src/images/`; this module is how they were made, so they can be
redrawn (`python -m amosync.widget.logo`) without an image library. The emblem — an envelope
inside two sync arrows, white on a blue-to-teal gradient — is drawn with signed distance
functions: one sample per pixel with the distance turned into coverage gives smooth edges.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

# File name → (width, height), as amoCRM's widget structure documentation lists them.
LOGO_SIZES: dict[str, tuple[int, int]] = {
    "logo_main.png": (400, 272),
    "logo_small.png": (108, 108),
    "logo.png": (130, 100),
    "logo_medium.png": (240, 84),
    "logo_min.png": (84, 84),
    "logo_dp.png": (174, 109),
}

RGB = tuple[int, int, int]
Point = tuple[float, float]

_GRADIENT_FROM: RGB = (0x1E, 0x6F, 0xD9)
_GRADIENT_TO: RGB = (0x12, 0xA4, 0xB4)
_INK: RGB = (0xFF, 0xFF, 0xFF)


def encode_png(width: int, height: int, rows: Sequence[bytes]) -> bytes:
    """An 8-bit RGB PNG of `rows` (each `width * 3` bytes); the same input gives the same bytes."""
    if len(rows) != height or any(len(row) != width * 3 for row in rows):
        raise ValueError("rows do not match the image size")

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # Filter type 0 (none) on every row keeps the encoder trivial; zlib does the rest.
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError when `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- signed distance functions, in emblem units (y points up, emblem fits in [-1, 1]²) ---


def _segment(p: Point, a: Point, b: Point) -> float:
    """Distance from p to the segment a–b."""
    px, py = p[0] - a[0], p[1] - a[1]
    bx, by = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, (px * bx + py * by) / (bx * bx + by * by)))
    return math.hypot(px - bx * t, py - by * t)


def _rounded_box(p: Point, half: Point, radius: float) -> float:
    """Signed distance to a box centred on the origin with rounded corners."""
    qx = abs(p[0]) - half[0] + radius
    qy = abs(p[1]) - half[1] + radius
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    return outside + min(max(qx, qy), 0.0) - radius


def _arc(p: Point, radius: float, start: float, end: float) -> float:
    """Distance from p to the circle arc of `radius` from angle `start` to `end` (radians)."""
    angle = math.atan2(p[1], p[0]) % math.tau
    if start <= angle <= end:
        return abs(math.hypot(p[0], p[1]) - radius)
    ends = ((radius * math.cos(a), radius * math.sin(a)) for a in (start, end))
    return min(math.hypot(p[0] - x, p[1] - y) for x, y in ends)


def _triangle(p: Point, a: Point, b: Point, c: Point) -> float:
    """Signed distance to the triangle a, b, c (negative inside)."""
    edge = min(_segment(p, a, b), _segment(p, b, c), _segment(p, c, a))

    def side(u: Point, v: Point) -> float:
        return (v[0] - u[0]) * (p[1] - u[1]) - (v[1] - u[1]) * (p[0] - u[0])

    signs = (side(a, b), side(b, c), side(c, a))
    inside = all(s >= 0 for s in signs) or all(s <= 0 for s in signs)
    return -edge if inside else edge


def _arrowhead(
    radius: float, angle: float, size: float, counterclockwise: bool
) -> tuple[Point, ...]:
    """A triangle sitting on the arc end at `angle`, pointing along the arc's direction."""
    cx, cy = radius * math.cos(angle), radius * math.sin(angle)
    nx, ny = math.cos(angle), math.sin(angle)  # outward normal
    tx, ty = (-ny, nx) if counterclockwise else (ny, -nx)  # direction of travel
    tip = (cx + tx * size * 1.1, cy + ty * size * 1.1)
    return tip, (cx + nx * size, cy + ny * size), (cx - nx * size, cy - ny * size)


def _emblem() -> Callable[[Point], float]:
    """The emblem's signed distance function: envelope strokes plus two sync arrows."""
    stroke = 0.055
    ring = 0.86
    gap = math.radians(24)
    arcs = ((gap, math.pi - gap), (math.pi + gap, math.tau - gap))
    heads = [_arrowhead(ring, end, 0.13, counterclockwise=True) for _, end in arcs]
    half = (0.46, 0.31)
    flap_left, flap_right, flap_tip = (-0.40, 0.25), (0.40, 0.25), (0.0, -0.04)

    def distance(p: Point) -> float:
        envelope = abs(_rounded_box(p, half, 0.07)) - stroke
        flap = min(_segment(p, flap_left, flap_tip), _segment(p, flap_tip, flap_right)) - stroke
        arrows = min(_arc(p, ring, start, end) for start, end in arcs) - stroke
        tips = min(_triangle(p, *head) for head in heads)
        return min(envelope, flap, arrows, tips)

    return distance


def draw_logo(width: int, height: int) -> list[bytes]:
    """RGB rows of the logo at `width` × `height`: the emblem centred on the gradient."""
    shape = _emblem()
    scale = min(width, height) * 0.42  # pixels per emblem unit: the emblem fills ~84%
    cx, cy = width / 2, height / 2
    rows: list[bytes] = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            t = (x / max(width - 1, 1) + y / max(height - 1, 1)) / 2
            background = [
                f + (g - f) * t for f, g in zip(_GRADIENT_FROM, _GRADIENT_TO, strict=True)
            ]
            point = ((x + 0.5 - cx) / scale, (cy - y - 0.5) / scale)
            coverage = max(0.0, min(1.0, 0.5 - shape(point) * scale))
            row.extend(
                round(b + (ink - b) * coverage) for b, ink in zip(background, _INK, strict=True)
            )
        rows.append(bytes(row))
    return rows


def render_logos() -> dict[str, bytes]:
    """Every logo file amoCRM asks for, as PNG bytes by file name."""
    return {
        name: encode_png(width, height, draw_logo(width, height))
        for name, (width, height) in LOGO_SIZES.items()
    }


def write_logos(folder: Path) -> list[Path]:
    """Write every logo into `folder`; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_logos().items():
        path = folder / name
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "src" / "images"
    for written_path in write_logos(target):
        sys.stdout.write(f"{written_path}\n")
