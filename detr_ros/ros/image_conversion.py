"""Camera messages <-> numpy images, without cv_bridge and without a ROS context.

The functions take the fields of ``sensor_msgs/Image`` (encoding, width, height, step,
is_bigendian, data) or ``sensor_msgs/CompressedImage`` (format, data) and return an
image the detector reads: ``uint8 [height, width, 3]`` plus its colour order ("rgb" or
"bgr"). Returning the camera's own order lets rgb8 and bgr8 frames reach the model
without a copy. Anything that cannot be a valid image raises ``ImageMessageError``
with the reason, so the node can count it and keep serving.

The encoders (``encode_image``, ``encode_compressed``) are the inverse, used by the
synthetic camera to publish any encoding.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from detr_ros.errors import DetrRosError
from detr_ros.runtime.encoded_images import DEFAULT_MAX_PIXELS, EncodedImageError, decode_image as decode_encoded

# A side longer than this is taken as a corrupt header rather than a real camera.
MAX_IMAGE_SIDE = 16384

COMPRESSED_FORMATS = ("jpeg", "png")


class ImageMessageError(DetrRosError):
    """A camera message that cannot be read as an image; the message gives the reason."""


@dataclass(frozen=True)
class _Layout:
    bytes_per_pixel: int
    channels: int  # values per pixel in the buffer (2 for packed YUV 4:2:2)
    to_three_channels: int | None  # cv2 colour conversion code, None when already 3 channels
    color_order: str  # order of the returned image
    sixteen_bit: bool = False
    even_width: bool = False  # packed YUV 4:2:2 shares chroma between pixel pairs
    bayer: bool = False


# OpenCV names Bayer patterns after the second row's second and third pixels, ROS after
# the top-left 2x2 block, so ROS "rggb" is OpenCV "BG". The old names are used because
# the sensor-order aliases (COLOR_BayerRGGB2RGB, ...) are missing in OpenCV < 4.6 (Humble).
_LAYOUTS = {
    "rgb8": _Layout(3, 3, None, "rgb"),
    "bgr8": _Layout(3, 3, None, "bgr"),
    "8UC3": _Layout(3, 3, None, "bgr"),  # OpenCV's own 3-channel layout
    "rgba8": _Layout(4, 4, cv2.COLOR_RGBA2RGB, "rgb"),
    "bgra8": _Layout(4, 4, cv2.COLOR_BGRA2BGR, "bgr"),
    "mono8": _Layout(1, 1, cv2.COLOR_GRAY2RGB, "rgb"),
    "8UC1": _Layout(1, 1, cv2.COLOR_GRAY2RGB, "rgb"),
    "mono16": _Layout(2, 1, cv2.COLOR_GRAY2RGB, "rgb", sixteen_bit=True),
    "yuv422": _Layout(2, 2, cv2.COLOR_YUV2RGB_UYVY, "rgb", even_width=True),
    "yuv422_yuy2": _Layout(2, 2, cv2.COLOR_YUV2RGB_YUY2, "rgb", even_width=True),
    "bayer_rggb8": _Layout(1, 1, cv2.COLOR_BayerBG2RGB, "rgb", bayer=True),
    "bayer_bggr8": _Layout(1, 1, cv2.COLOR_BayerRG2RGB, "rgb", bayer=True),
    "bayer_gbrg8": _Layout(1, 1, cv2.COLOR_BayerGR2RGB, "rgb", bayer=True),
    "bayer_grbg8": _Layout(1, 1, cv2.COLOR_BayerGB2RGB, "rgb", bayer=True),
}

SUPPORTED_ENCODINGS = tuple(_LAYOUTS)

# Offsets (row, column) of the red and blue sites in the top-left 2x2 block.
_BAYER_SITES = {
    "bayer_rggb8": ((0, 0), (1, 1)),
    "bayer_bggr8": ((1, 1), (0, 0)),
    "bayer_gbrg8": ((1, 0), (0, 1)),
    "bayer_grbg8": ((0, 1), (1, 0)),
}


def _layout_for(encoding):
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageMessageError(f"unsupported encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    return layout


def _check_size(width, height, max_pixels=DEFAULT_MAX_PIXELS):
    if width <= 0 or height <= 0:
        raise ImageMessageError(f"image size {width}x{height} is empty")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ImageMessageError(f"image size {width}x{height} exceeds the limit of {MAX_IMAGE_SIDE} pixels a side")
    if width * height > max_pixels:
        raise ImageMessageError(f"image size {width}x{height} exceeds the limit of {max_pixels} pixels "
                                "(max_image_pixels)")


def decode_image(encoding, width, height, step, is_bigendian, data, max_pixels=DEFAULT_MAX_PIXELS):
    """Read the fields of a sensor_msgs/Image.

    data: any buffer (bytes, array.array, memoryview, numpy) of exactly step * height bytes.
    Returns (image uint8 [height, width, 3], color_order "rgb" | "bgr"); the image may be a
    read-only view into ``data``. Images of more than ``max_pixels`` are refused before any
    conversion allocates their copy.
    """
    layout = _layout_for(encoding)
    _check_size(width, height, max_pixels)
    if layout.even_width and width % 2:
        raise ImageMessageError(f"{encoding} packs pixel pairs, but width {width} is odd")
    if layout.bayer and (width < 2 or height < 2):
        raise ImageMessageError(f"{encoding} needs at least 2x2 pixels, got {width}x{height}")
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageMessageError(f"step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} bytes)")
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != step * height:
        raise ImageMessageError(
            f"data has {raw.size} bytes, expected step * height = {step} * {height} = {step * height}"
        )
    rows = raw.reshape(height, step)[:, :row_bytes]
    if layout.sixteen_bit:
        pixels = rows.view(">u2" if is_bigendian else "<u2")
        # The top byte keeps the full range of a 16-bit camera; x >> 8 inverts x * 257 exactly.
        pixels = (pixels >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, layout.channels)
    if layout.to_three_channels is not None:
        pixels = cv2.cvtColor(pixels, layout.to_three_channels)
    return pixels, layout.color_order


def decode_image_message(msg, max_pixels=DEFAULT_MAX_PIXELS):
    """``decode_image`` on a sensor_msgs/Image (or anything with its fields)."""
    return decode_image(msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian, msg.data, max_pixels)


def _compressed_kind(format_field, payload):
    """'jpeg' or 'png' from the format string ("jpeg", "rgb8; jpeg compressed bgr8", ...) and magic bytes."""
    words = format_field.lower().replace(";", " ").split()
    if "png" in words:
        claimed = "png"
    elif "jpeg" in words or "jpg" in words:
        claimed = "jpeg"
    elif format_field.strip():
        raise ImageMessageError(f"unsupported compressed format '{format_field}'; supported: {', '.join(COMPRESSED_FORMATS)}")
    else:
        claimed = None  # an empty format is common; the magic bytes decide
    if payload[:2].tobytes() == b"\xff\xd8":
        found = "jpeg"
    elif payload[:8].tobytes() == b"\x89PNG\r\n\x1a\n":
        found = "png"
    else:
        raise ImageMessageError(f"compressed data ({payload.size} bytes) starts with neither a JPEG nor a PNG signature")
    if claimed is not None and claimed != found:
        raise ImageMessageError(f"format says '{format_field}' but the data is {found}")
    return found


def decode_compressed(format_field, data, max_pixels=DEFAULT_MAX_PIXELS, warnings=None):
    """Decode a sensor_msgs/CompressedImage (jpeg or png). Returns (image uint8 [H, W, 3], "bgr").

    The size stated in the header is checked against ``max_pixels`` before decoding, so a small
    message claiming a huge image (or a decompression bomb) costs no memory. warnings: a list
    that receives the decoder's warning lines (see runtime.encoded_images.decode_image).
    """
    payload = np.frombuffer(data, dtype=np.uint8)
    if payload.size == 0:
        raise ImageMessageError("compressed image has no data")
    kind = _compressed_kind(format_field, payload)
    # libjpeg decodes a truncated file into a partly grey image with only a warning:
    # insist on the end-of-image marker (some cameras pad with zeros after it).
    if kind == "jpeg" and np.trim_zeros(payload[-64:], "b")[-2:].tobytes() != b"\xff\xd9":
        raise ImageMessageError(f"JPEG data ({payload.size} bytes) is truncated: no end-of-image marker")
    try:
        image = decode_encoded(payload, max_pixels, warnings=warnings)
    except EncodedImageError as error:
        raise ImageMessageError(f"{kind.upper()} data ({payload.size} bytes): {error}") from None
    _check_size(image.shape[1], image.shape[0], max_pixels)
    return image, "bgr"


def decode_compressed_message(msg, max_pixels=DEFAULT_MAX_PIXELS, warnings=None):
    """``decode_compressed`` on a sensor_msgs/CompressedImage (or anything with its fields)."""
    return decode_compressed(msg.format, msg.data, max_pixels, warnings)


def encode_image(rgb, encoding, is_bigendian=False, row_padding=0):
    """The inverse of ``decode_image`` for publishers.

    rgb: uint8 [height, width, 3] in RGB order. Returns (data bytes, step) for a
    sensor_msgs/Image of that encoding; rows are followed by ``row_padding`` zero bytes.
    """
    layout = _layout_for(encoding)
    height, width = rgb.shape[:2]
    _check_size(width, height)
    if layout.even_width and width % 2:
        raise ImageMessageError(f"{encoding} packs pixel pairs, but width {width} is odd")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding in ("bgr8", "8UC3"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding in ("mono8", "8UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == "mono16":
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
        pixels = gray.astype(">u2" if is_bigendian else "<u2").view(np.uint8).reshape(height, width * 2)
    elif encoding == "yuv422":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
    elif encoding == "yuv422_yuy2":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    else:
        pixels = bayer_mosaic(rgb, encoding)
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    if row_padding:
        rows = np.pad(rows, ((0, 0), (0, row_padding)))
    return rows.tobytes(), rows.shape[1]


def bayer_mosaic(rgb, encoding):
    """Sample RGB [H, W, 3] into a one-channel Bayer image of the ROS pattern ``encoding``."""
    (red_row, red_col), (blue_row, blue_col) = _BAYER_SITES[encoding]
    mosaic = rgb[:, :, 1].copy()
    mosaic[red_row::2, red_col::2] = rgb[red_row::2, red_col::2, 0]
    mosaic[blue_row::2, blue_col::2] = rgb[blue_row::2, blue_col::2, 2]
    return mosaic


def encode_compressed(rgb, format_field):
    """Compress RGB [H, W, 3] uint8 as 'jpeg' or 'png'; returns the bytes for CompressedImage.data."""
    if format_field not in COMPRESSED_FORMATS:
        raise ImageMessageError(f"unsupported compressed format '{format_field}'; supported: {', '.join(COMPRESSED_FORMATS)}")
    ok, payload = cv2.imencode(".jpg" if format_field == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageMessageError(f"OpenCV could not encode a {rgb.shape} image as {format_field}")
    return payload.tobytes()
