"""Compressed images (JPEG, PNG, BMP, WebP, TIFF) decoded only after their header says they fit.

A compressed image states its size in a few header bytes, and decoding allocates that size whatever
the payload holds: 69 bytes of PNG header can claim 40000 x 40000 pixels, and a small PNG of zeros
can decode to gigabytes. So the size is read from the header first, without decoding, and an image
over ``max_pixels`` is refused before any pixel is allocated. Every decoder failure becomes an
``EncodedImageError`` with the reason, so callers reject the image and go on.
"""

import contextlib
import os
import struct
import sys
import tempfile
import threading

import cv2
import numpy as np

from detr_ros.errors import DetrRosError

# 8000 x 6000 camera frames and a little more; decoded as 3 channels, at most 150 MB.
DEFAULT_MAX_PIXELS = 50_000_000
FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are others.
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_MARKERS_WITHOUT_LENGTH = frozenset([0x01, *range(0xD0, 0xD9)])
JPEG_START_OF_SCAN = 0xDA


# libjpeg and libpng print their warnings straight to the process's stderr; while they are captured,
# stderr is redirected for the whole process, so captures take turns.
_STDERR_CAPTURE = threading.Lock()


class EncodedImageError(DetrRosError):
    """Bytes that cannot be read as an image within the limits; the message gives the reason."""


def _png_size(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise EncodedImageError("PNG without its IHDR header")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data):
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise EncodedImageError(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in JPEG_MARKERS_WITHOUT_LENGTH:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        if marker == JPEG_START_OF_SCAN or length < 2:
            break
        position += 2 + length
    raise EncodedImageError("JPEG without a frame header before its image data")


def _bmp_size(data):
    if len(data) < 26:
        raise EncodedImageError("BMP header cut short")
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise EncodedImageError("WebP without a readable VP8, VP8L or VP8X header")


def _tiff_size(data):
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        found = {}
        for entry in range(count):
            start = offset + 2 + 12 * entry
            tag, kind = struct.unpack(order + "HH", data[start:start + 4])
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
                value = data[start + 8:start + 12]
                found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
        return found[256], found[257]
    except (struct.error, KeyError):
        raise EncodedImageError("TIFF without a readable width and height") from None


def encoded_size(data):
    """(width, height) stated by the header of a JPEG, PNG, BMP, WebP or TIFF image, without decoding it.

    data: bytes, bytearray, memoryview or a uint8 array."""
    view = memoryview(data).cast("B")
    data = bytes(view[:65536])  # enough for every header but TIFF's, which may sit at the end
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data.startswith(b"BM"):
        return _bmp_size(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(bytes(view))
    raise EncodedImageError(f"not an image of a known format ({', '.join(FORMATS)})")


_stderr_sink = None  # one scratch file for every capture, made on first use (under the lock)


@contextlib.contextmanager
def _stderr_captured(lines):
    """Append the lines written to file descriptor 2 meanwhile (by any thread) to ``lines``."""
    global _stderr_sink
    with _STDERR_CAPTURE:
        if _stderr_sink is None:
            _stderr_sink = tempfile.TemporaryFile()
        sink = _stderr_sink
        sink.seek(0)
        sink.truncate()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())


def decode_image(data, max_pixels=DEFAULT_MAX_PIXELS, flags=cv2.IMREAD_COLOR, warnings=None):
    """Decode compressed image bytes (bytes, bytearray, memoryview or uint8 array) with OpenCV: a BGR
    uint8 [H, W, 3] array (with the default flags). Refused, before decoding, when the header states
    more than ``max_pixels``; any decoder failure is an EncodedImageError too.

    warnings: a list that receives the decoder's own warning lines (libjpeg's "Corrupt JPEG data",
    libpng's CRC errors) instead of their going to stderr, so that a caller can throttle them;
    None leaves them on stderr."""
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.size == 0:
        raise EncodedImageError("empty image data")
    width, height = encoded_size(buffer)
    if width <= 0 or height <= 0:
        raise EncodedImageError(f"its header states a size of {width}x{height}")
    if width * height > max_pixels:
        raise EncodedImageError(f"its header states {width}x{height} pixels, over the limit of {max_pixels} "
                                f"({width * height / max_pixels:.1f} times); refused before decoding")
    said = []
    try:
        with _stderr_captured(said) if warnings is not None else contextlib.nullcontext():
            image = cv2.imdecode(buffer, flags)
    except cv2.error as error:
        raise EncodedImageError(f"the decoder failed: {str(error).strip().splitlines()[-1]}") from None
    if image is None:
        detail = f": {'; '.join(said)}" if said else ""
        raise EncodedImageError(f"the decoder could not read it (truncated or corrupt){detail}")
    if warnings is not None:
        warnings.extend(said)
    return image


def read_image_file(path, max_pixels=DEFAULT_MAX_PIXELS):
    """An image file as BGR uint8 [H, W, 3], with decode_image's checks; EncodedImageError names the file."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as error:
        raise EncodedImageError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        return decode_image(data, max_pixels)
    except EncodedImageError as error:
        raise EncodedImageError(f"{path}: {error}") from None
