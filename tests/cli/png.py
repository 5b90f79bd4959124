#!/usr/bin/env python3
"""Reads the PNG screenshots headless Chromium writes (8-bit RGB or RGBA,
not interlaced), with the standard library only.

  png.py ink FILE            prints the share of pixels that are not near-white
  png.py crop FILE OUT Y H   writes rows [Y, Y+H) of FILE to OUT
"""
import struct
import sys
import zlib


def read(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(path + ": not a PNG file")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(path + ": only 8-bit RGB/RGBA, not interlaced")
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def ink(path):
    width, height, channels, rows = read(path)
    dark = 0
    for row in rows:
        for x in range(0, len(row), channels):
            if row[x] < 200 or row[x + 1] < 200 or row[x + 2] < 200:
                dark += 1
    return dark / float(width * height)


def crop(path, out, y, h):
    width, height, channels, rows = read(path)
    rows = rows[y:y + h]
    raw = b"".join(b"\x00" + r for r in rows)
    color = 2 if channels == 3 else 6

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, color, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    open(out, "wb").write(png)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "ink":
        print("%.4f" % ink(sys.argv[2]))
    elif len(sys.argv) == 6 and sys.argv[1] == "crop":
        crop(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
