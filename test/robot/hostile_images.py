"""Crafted compressed images for the tests and benchmarks of hostile input: small files whose headers
claim huge sizes, decompression bombs, and broken data."""

import struct
import zlib

import cv2
import numpy as np


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_claiming(width, height):
    """A PNG signature and IHDR chunk (69 bytes with an empty IDAT and IEND) claiming width x height."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")


def jpeg_claiming(width, height):
    """A real small JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    position = 2
    while data[position + 1] not in (0xC0, 0xC2):
        position += 2 + struct.unpack(">H", data[position + 2:position + 4])[0]
    data[position + 5:position + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bomb(width, height, channels=1):
    """A valid PNG of width x height zeros (grey, or RGB with channels=3): a few kilobytes compressed,
    width * height * channels bytes decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (channels * width + 1)  # filter byte, then the pixels
    rows = [compressor.compress(row) for _ in range(height)] + [compressor.flush()]
    color_type = {1: 0, 3: 2}[channels]
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
            + _chunk(b"IDAT", b"".join(rows)) + _chunk(b"IEND", b""))
