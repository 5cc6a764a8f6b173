"""Draws the two Teams app icons with the standard library only: `python -m manifest.icons`.

color.png   192x192, full colour: a white shield with a tick on the school-safe teal.
outline.png 32x32, transparent background, the same shield in white only (Teams tints it).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEAL = (15, 110, 110, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)


def png(width: int, height: int, pixels: list[list[tuple[int, int, int, int]]]) -> bytes:
    """An 8-bit RGBA PNG (colour type 6), each row with filter 0."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _inside_shield(x: float, y: float) -> bool:
    """A shield in the unit square: flat top with rounded shoulders, sides curving to a point at the bottom."""
    if y < 0.08 or y > 0.95:
        return False
    if y < 0.5:
        half = 0.38 - max(0.0, 0.16 - y) * 0.9
    else:
        half = 0.38 * ((0.95 - y) / 0.45) ** 0.8
    return abs(x - 0.5) <= half


def _on_tick(x: float, y: float, width: float) -> bool:
    """A tick from (0.32, 0.5) down to (0.45, 0.64) and up to (0.68, 0.36)."""

    def near(ax: float, ay: float, bx: float, by: float) -> bool:
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
        return ((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2) ** 0.5 <= width

    return near(0.32, 0.5, 0.45, 0.64) or near(0.45, 0.64, 0.68, 0.36)


def colour_icon(size: int = 192) -> bytes:
    rows = []
    for j in range(size):
        row = []
        for i in range(size):
            x, y = (i + 0.5) / size, (j + 0.5) / size
            if _inside_shield(x, y) and not _on_tick(x, y, 0.045):
                row.append(WHITE)
            else:
                row.append(TEAL)
        rows.append(row)
    return png(size, size, rows)


def outline_icon(size: int = 32) -> bytes:
    """White outline of the shield plus the tick, on a fully transparent background."""
    rows = []
    for j in range(size):
        row = []
        for i in range(size):
            x, y = (i + 0.5) / size, (j + 0.5) / size
            edge = _inside_shield(x, y) and not all(
                _inside_shield(x + dx / size, y + dy / size) for dx in (-1.5, 1.5) for dy in (-1.5, 1.5)
            )
            row.append(WHITE if edge or (_inside_shield(x, y) and _on_tick(x, y, 0.05)) else CLEAR)
        rows.append(row)
    return png(size, size, rows)


def main() -> None:
    (HERE / "color.png").write_bytes(colour_icon())
    (HERE / "outline.png").write_bytes(outline_icon())
    print(f"wrote {HERE / 'color.png'} and {HERE / 'outline.png'}")


if __name__ == "__main__":
    main()
