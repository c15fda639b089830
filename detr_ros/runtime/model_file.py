"""Checks on a model file before onnxruntime sees it, and its content hash.

onnxruntime's own messages for a bad file are protobuf parse errors; these checks name the
path and say what the file is instead (missing, empty, a PyTorch checkpoint, ...).
"""

import hashlib
from pathlib import Path

from detr_ros.errors import ModelFileError
from detr_ros.runtime.metadata import KEY_PRECISION

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
QDQ_MARKER = b"DequantizeLinear"
CHUNK_BYTES = 1 << 20
# A ModelProto stores its metadata_props (field 14) after the graph, so they sit in the file's last
# bytes; a class list of thousands of names still fits in this many.
METADATA_TAIL_BYTES = 1 << 20


def check_model_file(path):
    """Raise ModelFileError unless path names a non-empty file that could be ONNX."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a file, expected an ONNX model file")
    try:
        with path.open("rb") as stream:
            head = stream.read(4)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not head:
        raise ModelFileError(f"{path}: is empty, expected an ONNX model")
    if head == ZIP_MAGIC:
        raise ModelFileError(
            f"{path}: is a zip archive (a PyTorch checkpoint?), expected an ONNX model; "
            "convert a detr_ros checkpoint with `detr-ros export`"
        )
    return path


def file_digest(path):
    """(sha256 hex of the file, whether it holds QuantizeLinear/DequantizeLinear nodes).

    ONNX stores op types as plain strings, so scanning the bytes tells whether a graph carries its
    own INT8 calibration (QDQ) without parsing it; the overlap catches a name split across chunks.
    """
    sha = hashlib.sha256()
    has_qdq = False
    tail = b""
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            sha.update(chunk)
            has_qdq = has_qdq or QDQ_MARKER in tail + chunk
            tail = chunk[-len(QDQ_MARKER):]
    return sha.hexdigest(), has_qdq


def declared_metadata(path, key):
    """The file's ``metadata_props`` value for ``key`` (a short string), or "" when it has none.

    Read off the file's tail, where the metadata is, without a session: what to open, and with which
    options, can depend on it. An entry is serialized as 0x0A, len, key, 0x12, len, value (protobuf).
    """
    with open(path, "rb") as stream:
        stream.seek(0, 2)
        stream.seek(max(0, stream.tell() - METADATA_TAIL_BYTES))
        tail = stream.read()
    key = key.encode()
    entry = bytes([0x0A, len(key)]) + key + b"\x12"
    start = tail.rfind(entry)
    if start < 0:
        return ""
    length_at = start + len(entry)
    length = tail[length_at] if length_at < len(tail) else 0
    return tail[length_at + 1:length_at + 1 + length].decode(errors="replace") if length < 0x80 else ""


def declared_precision(path):
    """The file's ``detr_ros.precision`` metadata ("fp16"), or "" when it has none: the TensorRT
    options depend on it before any session exists."""
    return declared_metadata(path, KEY_PRECISION)
