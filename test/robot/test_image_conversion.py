"""sensor_msgs/Image and CompressedImage decoding, checked against OpenCV reference conversions.

The test builds each encoding's bytes itself from the ROS definition of the encoding
(channel order, UYVY vs YUYV byte order, the Bayer pattern's top-left block), so a
wrong mapping in the node's tables cannot agree with it by construction.
"""

import array

import cv2
import numpy as np
import pytest

from detr_ros.ros.image_conversion import (
    MAX_IMAGE_SIDE,
    SUPPORTED_ENCODINGS,
    ImageMessageError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)
from hostile_images import jpeg_claiming, png_bomb, png_header_claiming

HEIGHT, WIDTH = 24, 40


def smooth_rgb(height=HEIGHT, width=WIDTH):
    """Gradients plus a flat block: smooth enough that chroma subsampling and demosaicing stay close."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // (width - 1), ys * 255 // (height - 1), (xs + ys) * 255 // (width + height - 2)], axis=-1)
    rgb[4:12, 8:20] = (220, 40, 90)
    return rgb.astype(np.uint8)


def as_rgb(image, order):
    return image if order == "rgb" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def pad_rows(rows, padding):
    """rows: uint8 [H, row_bytes] -> (bytes, step) with ``padding`` junk bytes after each row."""
    junk = np.full((rows.shape[0], padding), 0xAB, np.uint8)
    padded = np.concatenate([rows, junk], axis=1)
    return padded.tobytes(), padded.shape[1]


def pack_yuv422(rgb, order):
    """Pack 4:2:2 from the definition: UYVY = U0 Y0 V0 Y1, YUYV = Y0 U0 Y1 V0 (chroma of the left pixel)."""
    # BT.601 video range, as cameras send it (and as OpenCV's 4:2:2 decoder expects).
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    y = np.clip(np.round(16 + 0.257 * r + 0.504 * g + 0.098 * b), 0, 255).astype(np.uint8)
    u = np.clip(np.round(128 - 0.148 * r - 0.291 * g + 0.439 * b), 0, 255).astype(np.uint8)[:, ::2]
    v = np.clip(np.round(128 + 0.439 * r - 0.368 * g - 0.071 * b), 0, 255).astype(np.uint8)[:, ::2]
    packed = np.empty((rgb.shape[0], rgb.shape[1] * 2), np.uint8)
    if order == "uyvy":
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    return packed


def mosaic(rgb, pattern):
    """Bayer sampling from the ROS pattern name, which lists the top-left 2x2 block row by row."""
    channel = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], np.uint8)
    for index, letter in enumerate(pattern):
        row, col = divmod(index, 2)
        out[row::2, col::2] = rgb[row::2, col::2, channel[letter]]
    return out


# encoding -> (buffer rows [H, bytes per row] built from rgb, OpenCV reference giving RGB)
def reference_case(encoding, rgb, bigendian=False):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height = rgb.shape[0]
    if encoding == "rgb8":
        return rgb.reshape(height, -1), rgb
    if encoding in ("bgr8", "8UC3"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        return bgr.reshape(height, -1), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if encoding in ("rgba8", "bgra8"):
        alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
        code = cv2.COLOR_RGB2RGBA if encoding == "rgba8" else cv2.COLOR_RGB2BGRA
        four = cv2.cvtColor(rgb, code)
        four[:, :, 3] = alpha  # alpha must not leak into the colour
        back = cv2.COLOR_RGBA2RGB if encoding == "rgba8" else cv2.COLOR_BGRA2RGB
        return four.reshape(height, -1), cv2.cvtColor(four, back)
    if encoding in ("mono8", "8UC1"):
        return gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if encoding == "mono16":
        # A low byte unlike the high byte, so that reading the wrong byte order shows.
        wide = gray.astype(np.uint16) * 256 + 0x5A
        rows = wide.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(height, -1)
        return rows, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if encoding == "yuv422":
        packed = pack_yuv422(rgb, "uyvy")
        return packed, cv2.cvtColor(packed.reshape(height, -1, 2), cv2.COLOR_YUV2RGB_UYVY)
    if encoding == "yuv422_yuy2":
        packed = pack_yuv422(rgb, "yuyv")
        return packed, cv2.cvtColor(packed.reshape(height, -1, 2), cv2.COLOR_YUV2RGB_YUY2)
    pattern = encoding[len("bayer_") : -1]
    # OpenCV's sensor-order alias (4.6+) is the reference; the node itself uses the old shifted names.
    code = getattr(cv2, f"COLOR_Bayer{pattern.upper()}2RGB")
    raw = mosaic(rgb, pattern)
    return raw, cv2.cvtColor(raw, code)


def test_every_listed_encoding_is_supported():
    assert set(SUPPORTED_ENCODINGS) == {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "yuv422", "yuv422_yuy2",
        "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
    }  # fmt: skip


@pytest.mark.parametrize("padding", [0, 7])
@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_decode_matches_opencv_reference(encoding, padding):
    rgb = smooth_rgb()
    rows, expected = reference_case(encoding, rgb)
    data, step = pad_rows(rows, padding)
    image, order = decode_image(encoding, WIDTH, HEIGHT, step, False, array.array("B", data))
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(as_rgb(image, order), expected)
    if encoding.startswith(("yuv", "bayer")):
        # The reference could share a wrong byte order or pattern; the source scene cannot.
        assert np.abs(as_rgb(image, order).astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_honours_byte_order(bigendian):
    rgb = smooth_rgb()
    rows, expected = reference_case("mono16", rgb, bigendian)
    data, step = pad_rows(rows, 3)  # odd step: rows start at unaligned addresses
    image, order = decode_image("mono16", WIDTH, HEIGHT, step, bigendian, data)
    np.testing.assert_array_equal(as_rgb(image, order), expected)
    swapped, _ = decode_image("mono16", WIDTH, HEIGHT, step, not bigendian, data)
    assert not np.array_equal(swapped, image)


@pytest.mark.parametrize("encoding", [e for e in SUPPORTED_ENCODINGS if e.startswith("bayer")])
def test_bayer_pattern_gives_true_colours(encoding):
    """Independent of any OpenCV naming: a flat coloured scene must come back in its colour."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:] = (200, 60, 20)
    image, order = decode_image(encoding, 16, 16, 16, False, mosaic(rgb, encoding[6:-1]).tobytes())
    np.testing.assert_array_equal(as_rgb(image, order)[2:-2, 2:-2], rgb[2:-2, 2:-2])


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_encode_then_decode_round_trip(encoding):
    rgb = smooth_rgb()
    data, step = encode_image(rgb, encoding, row_padding=5)
    image, order = decode_image(encoding, WIDTH, HEIGHT, step, False, data)
    decoded = as_rgb(image, order)
    if encoding in ("rgb8", "bgr8", "8UC3", "rgba8", "bgra8"):
        np.testing.assert_array_equal(decoded, rgb)
    elif encoding in ("mono8", "8UC1", "mono16"):
        np.testing.assert_array_equal(decoded, cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB))
    else:  # 4:2:2 chroma and Bayer sampling lose a little on this smooth scene
        assert np.abs(decoded.astype(int) - rgb).mean() < 6


def test_rgb_and_bgr_are_not_copied():
    rgb = smooth_rgb()
    data = bytearray(rgb.tobytes())
    image, order = decode_image("rgb8", WIDTH, HEIGHT, WIDTH * 3, False, data)
    assert order == "rgb" and np.shares_memory(image, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("format_field", ["jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8", ""])
def test_compressed_matches_imdecode(format_field):
    rgb = smooth_rgb()
    kind = "png" if "png" in format_field else "jpeg"
    payload = encode_compressed(rgb, kind)
    image, order = decode_compressed(format_field, array.array("B", payload))
    reference = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(image, reference)
    if kind == "png":
        np.testing.assert_array_equal(as_rgb(image, order), rgb)


def test_jpeg_padded_with_zeros_after_end_marker_is_accepted():
    payload = encode_compressed(smooth_rgb(), "jpeg") + bytes(16)
    image, _ = decode_compressed("jpeg", payload)
    assert image.shape == (HEIGHT, WIDTH, 3)


ROW = WIDTH * 3


@pytest.mark.parametrize(
    "encoding, width, height, step, size, reason",
    [
        ("rgb8", WIDTH, HEIGHT, ROW, ROW * HEIGHT - 1, r"expected step \* height"),
        ("rgb8", WIDTH, HEIGHT, ROW, ROW * HEIGHT + 3, r"expected step \* height"),
        ("rgb8", WIDTH, HEIGHT, ROW - 1, (ROW - 1) * HEIGHT, "smaller than one row"),
        ("mono16", WIDTH, HEIGHT, WIDTH, WIDTH * HEIGHT, "smaller than one row"),
        ("rgb8", 0, HEIGHT, 0, 0, "empty"),
        ("rgb8", WIDTH, 0, ROW, 0, "empty"),
        ("mono8", MAX_IMAGE_SIDE + 1, 1, MAX_IMAGE_SIDE + 1, MAX_IMAGE_SIDE + 1, "exceeds the limit"),
        ("mono8", 1, 10**9, 1, 16, "exceeds the limit"),
        ("rgb16", WIDTH, HEIGHT, WIDTH * 6, WIDTH * 6 * HEIGHT, "unsupported encoding 'rgb16'"),
        ("", WIDTH, HEIGHT, ROW, ROW * HEIGHT, "unsupported encoding ''"),
        ("yuv422", 5, 2, 10, 20, "width 5 is odd"),
        ("bayer_rggb8", 1, 4, 1, 4, "at least 2x2"),
    ],
)
def test_malformed_image_is_rejected_with_reason(encoding, width, height, step, size, reason):
    with pytest.raises(ImageMessageError, match=reason):
        decode_image(encoding, width, height, step, False, bytes(size))


@pytest.mark.parametrize(
    "format_field, payload, reason",
    [
        ("jpeg", b"", "no data"),
        ("jpeg", b"hello world, not an image", "neither a JPEG nor a PNG"),
        ("jpeg", None, "truncated"),
        ("jpeg", "garbage", "without a frame header"),
        ("png", "png-truncated", "corrupt"),
        ("png", "jpeg-bytes", "data is jpeg"),
        ("h264", "jpeg-bytes", "unsupported compressed format 'h264'"),
    ],
)
def test_malformed_compressed_is_rejected_with_reason(format_field, payload, reason):
    jpeg = encode_compressed(smooth_rgb(), "jpeg")
    png = encode_compressed(smooth_rgb(), "png")
    payload = {
        None: jpeg[: len(jpeg) // 2],
        # Valid start and end markers around noise: only the decoder can tell.
        "garbage": b"\xff\xd8" + np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes() + b"\xff\xd9",
        "png-truncated": png[: len(png) // 2],
        "jpeg-bytes": jpeg,
    }.get(payload, payload)
    with pytest.raises(ImageMessageError, match=reason):
        decode_compressed(format_field, payload)


@pytest.mark.parametrize("format_field, payload, claimed", [
    ("png", png_header_claiming(40000, 40000), "40000x40000"),
    ("jpeg", jpeg_claiming(60000, 60000), "60000x60000"),
])
def test_compressed_header_claiming_a_huge_image_is_rejected_before_decoding(format_field, payload, claimed):
    with pytest.raises(ImageMessageError, match=f"states {claimed} pixels, over the limit"):
        decode_compressed(format_field, payload)


def test_compressed_bomb_over_max_pixels_is_rejected_and_within_it_decoded():
    bomb = png_bomb(2000, 1500, channels=3)
    with pytest.raises(ImageMessageError, match="over the limit of 1000000"):
        decode_compressed("png", bomb, max_pixels=1_000_000)
    image, _ = decode_compressed("png", bomb, max_pixels=3_000_000)
    assert image.shape == (1500, 2000, 3)


def test_raw_image_over_max_pixels_is_rejected():
    with pytest.raises(ImageMessageError, match="limit of 100 pixels"):
        decode_image("mono8", 20, 10, 20, False, bytes(200), max_pixels=100)
    image, _ = decode_image("mono8", 10, 10, 10, False, bytes(100), max_pixels=100)
    assert image.shape == (10, 10, 3)


def test_decoder_warnings_are_returned_instead_of_printed(capfd):
    jpeg = bytearray(encode_compressed(smooth_rgb(), "jpeg"))
    jpeg[-2:-2] = bytes(40)  # stray bytes before the end marker: libjpeg decodes and warns
    warnings = []
    image, _ = decode_compressed("jpeg", bytes(jpeg), warnings=warnings)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert any("Corrupt JPEG data" in line for line in warnings), warnings
    assert "Corrupt JPEG" not in capfd.readouterr().err
