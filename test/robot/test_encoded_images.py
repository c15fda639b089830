"""Compressed images are sized from their header and refused over the limit before any decoding."""

import cv2
import numpy as np
import pytest

from detr_ros.runtime.encoded_images import (DEFAULT_MAX_PIXELS, EncodedImageError, decode_image, encoded_size,
                                             read_image_file)
from hostile_images import jpeg_claiming, png_bomb, png_header_claiming


@pytest.mark.parametrize("extension", [".jpg", ".png", ".bmp", ".webp", ".tiff"])
def test_every_format_states_its_size_in_its_header(extension):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = cv2.imencode(extension, image)[1].tobytes()
    assert encoded_size(data) == (53, 37)
    assert decode_image(data).shape == (37, 53, 3)


@pytest.mark.parametrize("data, claimed", [(png_header_claiming(40000, 40000), "40000x40000"),
                                           (jpeg_claiming(60000, 60000), "60000x60000")])
def test_a_header_claiming_a_huge_image_is_refused_before_decoding(data, claimed):
    assert len(data) < 1000
    with pytest.raises(EncodedImageError, match=f"states {claimed} pixels, over the limit"):
        decode_image(data)


def test_a_decompression_bomb_over_the_limit_is_refused_and_one_within_it_decoded():
    bomb = png_bomb(4000, 3000)  # 12 megapixels of zeros in a few kilobytes
    assert len(bomb) < 50_000 and encoded_size(bomb) == (4000, 3000)
    with pytest.raises(EncodedImageError, match="over the limit of 1000000 .*refused before decoding"):
        decode_image(bomb, max_pixels=1_000_000)
    assert decode_image(bomb, max_pixels=DEFAULT_MAX_PIXELS).shape == (3000, 4000, 3)  # within the limit: decoded


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"GIF89a" + bytes(20), "not an image of a known format"),
    (png_header_claiming(0, 10), "size of 0x10"),
    (cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes()[:60], "truncated or corrupt"),
    (b"\xff\xd8\xff\xda" + bytes(30), "without a frame header"),
    (b"\x89PNG\r\n\x1a\n" + bytes(4), "without its IHDR"),
])
def test_broken_data_is_an_error_with_the_reason(data, reason):
    with pytest.raises(EncodedImageError, match=reason):
        decode_image(data)


def test_an_unreadable_file_is_named(tmp_path):
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(EncodedImageError, match="garbage.jpg"):
        read_image_file(tmp_path / "garbage.jpg")
    with pytest.raises(EncodedImageError, match="missing.png: cannot be read"):
        read_image_file(tmp_path / "missing.png")
