"""Where detected objects are in 3D: image boxes and an aligned depth image -> points in the camera frame.

Pure numpy. Coordinates are the camera's optical frame (ROS REP 103: x right, y down, z forward,
metres); pixel coordinates follow sensor_msgs/CameraInfo (integers at pixel centres), while boxes
are xyxy pixel edges as the detector gives them, so a box centre is shifted by half a pixel.

An object's distance is the median depth of the nearest surface seen in the inner part of its
box. The inner part leaves out the box's rim, where background shows around any non-rectangular
object; the nearest surface that covers a real share of it (not a few noisy pixels) is the object,
since a box is drawn around what is in front: background behind it, or through a hole in it (a ring),
is farther away. An object partly hidden by a nearer one is the exception: the nearer one shows in
its box too. So the part of a box that other detected boxes cover is left out where enough remains
without it.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from detr_ros.errors import ConfigError
from detr_ros.runtime.detections import check_positive_integer

# Encodings of depth images: 16-bit unsigned millimetres (0: no reading) and 32-bit float metres
# (NaN, inf or 0: no reading), the two that REP 118 allows.
DEPTH_ENCODINGS = ("16UC1", "32FC1")


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels: focal lengths and principal point (px)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def from_camera_info(k, width, height):
        """From sensor_msgs/CameraInfo's K (9 values, row-major) and its image size."""
        k = np.asarray(k, np.float64).reshape(-1)
        if k.size != 9 or k[0] <= 0.0 or k[4] <= 0.0 or width <= 0 or height <= 0:
            raise ConfigError(f"camera intrinsics: K={k.tolist()} for {width}x{height}, expected positive focal "
                              "lengths K[0], K[4] and a positive image size")
        return CameraIntrinsics(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    # Cached: a placement reads them more than once, and they never change (frozen).
    @functools.cached_property
    def focal_lengths(self):
        """[2] fx, fy (px)."""
        return np.array([self.fx, self.fy])

    @functools.cached_property
    def principal_point(self):
        """[2] cx, cy (px)."""
        return np.array([self.cx, self.cy])

    def k_matrix(self):
        """The 9 values of CameraInfo's K, row-major."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


@dataclass(frozen=True)
class DepthSettings:
    """How boxes are measured in a depth image.

    inner_fraction: the part of the box's width and height, about its centre, whose depths count;
    min_surface_fraction: the share of the inner part's readings the nearest surface must hold;
    surface_gap: depths further apart than this fraction of the distance belong to different surfaces;
    min_unshared_fraction: the share of the inner part's readings that must lie outside every other
    box for those alone to count (else all count: a box within another's);
    max_samples: readings taken per box at most (an even grid), which bounds the time per box; the
    median of 144 readings of a surface with 1% depth noise is off by about 0.1% of the distance.
    A box smaller than the grid is read at every pixel, some twice: the same shares of each surface.
    """

    inner_fraction: float = 0.6
    min_surface_fraction: float = 0.2
    surface_gap: float = 0.05
    min_unshared_fraction: float = 0.25
    max_samples: int = 144

    def __post_init__(self):
        for name in ("inner_fraction", "min_surface_fraction", "surface_gap", "min_unshared_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)!r}, expected a number in (0, 1]")
        check_positive_integer("max_samples", self.max_samples)


@dataclass
class BoxesIn3D:
    """Boxes placed in the camera frame: centres [n, 3] and sizes [n, 3] (x, y, z) in metres;
    valid [n] bool, False where the box had too few depth readings (its rows are NaN)."""

    centres: np.ndarray
    sizes: np.ndarray
    valid: np.ndarray


def depth_in_metres(depth, encoding):
    """A depth image as float32 metres [H, W], NaN where there is no reading.

    depth: [H, W] uint16 millimetres (16UC1) or float32 metres (32FC1).
    """
    if encoding == "16UC1":
        metres = depth.astype(np.float32) * np.float32(0.001)
        metres[depth == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = np.array(depth, np.float32)
        metres[~np.isfinite(metres) | (metres <= 0.0)] = np.nan
        return metres
    raise ConfigError(f"depth encoding {encoding!r}, expected one of {', '.join(DEPTH_ENCODINGS)}")


def back_project(uv, z, intrinsics):
    """Camera-frame points [..., 3] (metres) of pixel coordinates uv [..., 2] (u, v; CameraInfo convention) at
    depths z [...]."""
    z = np.asarray(z, np.float64)[..., None]
    return np.concatenate([(uv - intrinsics.principal_point) * z / intrinsics.focal_lengths, z], axis=-1)


def box_centres(boxes):
    """Pixel coordinates (u, v) [n, 2] of xyxy pixel-edge boxes' centres [n, 4], in CameraInfo's convention."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (boxes[:, :2] + boxes[:, 2:]) / 2.0 - 0.5


def _inner_grid(boxes, settings, width, height):
    """Pixel columns and rows [n, 2, k] (grid[:, 0] columns, grid[:, 1] rows) of an even k x k grid over each
    box's inner part, k * k <= max_samples. Every box gets the same number of samples, so all boxes are
    handled as one array."""
    side = max(1, math.isqrt(settings.max_samples))
    half = settings.inner_fraction / 2.0
    centre, extent = (boxes[:, :2] + boxes[:, 2:]) / 2.0, boxes[:, 2:] - boxes[:, :2]
    start = centre - extent * half  # [n, 2] pixel edges of the inner part
    # Truncating is flooring wherever the clamp to the image leaves a value.
    grid = (start[:, :, None] + (2.0 * half * extent)[:, :, None] * _grid_steps(side)).astype(np.intp)
    np.maximum(grid, 0, out=grid)
    return np.minimum(grid, np.array([[width - 1], [height - 1]]), out=grid)


@functools.lru_cache(maxsize=4)
def _grid_steps(side):
    """[side] sample positions across a unit length, at the centres of ``side`` equal parts."""
    return (np.arange(side) + 0.5) / side


def _in_other_boxes(grid, boxes):
    """[n, k, k] bool, row-major like the grid: whether each grid pixel of box i lies inside another box.

    grid: [n, 2, k] pixel columns and rows of each box's grid (_inner_grid); boxes: [n, 4] xyxy."""
    count, _, side = grid.shape
    # within[0, j, i * k + a]: column a of box i's grid is within box j's width; within[1, j, i * k + b] likewise
    # for row b and box j's height. The samples, the long axis, innermost.
    centres = (grid + 0.5).transpose(1, 0, 2).reshape(2, 1, count * side)
    within = (centres >= boxes[:, :2].T[:, :, None]) & (centres < boxes[:, 2:].T[:, :, None])
    within = within.reshape(2, count, count, side)
    itself = np.arange(count)
    within[0, itself, itself] = False
    within = within.astype(np.float32)
    # Grid pixel (row b, column a) of box i is in box j when both its row and column are: summed over j,
    # one batched product of [k, n] by [n, k] per box.
    return np.matmul(within[1].transpose(1, 2, 0), within[0].transpose(1, 0, 2)) > 0.0


def _sample_inner_parts(depth, encoding, boxes, settings):
    """Depth readings on an even grid over each box's inner part: [n, k * k] metres (NaN: none), and how many
    each row holds [n].

    depth: [H, W] as its encoding (depth_in_metres), of which only the grid's pixels are converted.
    Readings inside other boxes are left out where ``min_unshared_fraction`` of them remain, so
    that a nearer object overlapping this one's box is not taken for it.
    """
    height, width = depth.shape
    grid = _inner_grid(boxes, settings, width, height)
    pixels = grid[:, 1, :, None] * width + grid[:, 0, None, :]  # [n, k, k] row-major indices
    readings = depth_in_metres(depth.reshape(-1).take(pixels), encoding).reshape(len(boxes), -1)
    # A box wholly outside the image has no readings of its own.
    readings[((boxes[:, 2:] <= 0) | (boxes[:, :2] >= (width, height))).any(axis=1)] = np.nan
    valid = np.isfinite(readings)
    counts = valid.sum(axis=1)
    if len(boxes) > 1:
        shared = _in_other_boxes(grid, boxes).reshape(len(boxes), -1)
        unshared_counts = (valid & ~shared).sum(axis=1)
        enough = unshared_counts >= settings.min_unshared_fraction * counts
        readings[shared & enough[:, None]] = np.nan
        counts = np.where(enough, unshared_counts, counts)
    return readings, counts


def _run_quantiles(flat, first, size, qs):
    """The qs-quantiles [r, len(qs)] of r runs of sorted values in ``flat``, run i being flat[first[i]:first[i] +
    size[i]] (numpy's linear rule)."""
    position = first[:, None] + np.asarray(qs) * (size[:, None] - 1)
    below = position.astype(np.intp)  # positions are not negative: the floor
    above = np.minimum(below + 1, (first + size - 1)[:, None])
    low = flat[below]
    return low + (flat[above] - low) * (position - below)


def object_surfaces(readings, count, settings, expected=None):
    """Distance (median) and depth spread (10th to 90th percentile) [n] each of the object's surface in each
    row of readings [n, m] (metres, NaN: none) holding ``count`` [n] readings each. A surface is a run of
    depths without a gap above ``surface_gap`` that holds ``min_surface_fraction`` of the row's readings;
    the object's is the one whose median is nearest ``expected`` [n] (metres; 0, the default: the surface
    nearest the camera). NaN where there is none."""
    ordered = np.sort(readings, axis=1)  # NaN last
    rows, width = ordered.shape
    # Runs over the readings of all rows end to end: a run starts at a row's first reading and after each gap.
    starts = np.arange(width) < count[:, None]
    starts[:, 1:] &= (ordered[:, 1:] - ordered[:, :-1]) > settings.surface_gap * ordered[:, 1:]
    first = np.flatnonzero(starts)  # [runs] flat index of each run's first reading, rows in order
    run_row = first // width
    # A run ends where the next one starts, or at its row's last reading.
    size = np.minimum(np.append(first[1:], rows * width), run_row * width + count[run_row]) - first
    low, medians, high = _run_quantiles(ordered.reshape(-1), first, size, (0.1, 0.5, 0.9)).T  # [runs] each
    target = np.zeros(rows) if expected is None else np.asarray(expected, np.float64)
    mismatch = np.full(rows * width, np.inf)  # at each run's first reading
    mismatch[first] = np.where(size >= settings.min_surface_fraction * count[run_row],
                               np.abs(medians - target[run_row]), np.inf)
    # Each row's best run: the least mismatch; of equal ones, the first (the nearer).
    best = np.argmin(mismatch.reshape(rows, width), axis=1) + np.arange(rows) * width
    found = np.isfinite(mismatch[best])
    runs = np.searchsorted(first, best[found])
    distances, spreads = np.full(rows, np.nan), np.full(rows, np.nan)
    distances[found], spreads[found] = medians[runs], high[runs] - low[runs]
    return distances, spreads


def locate_boxes(depth, boxes, intrinsics, settings=None, image_size=None, encoding="32FC1", expected=None):
    """Place image boxes in 3D with an aligned depth image.

    depth: [H, W] in ``encoding`` (depth_in_metres: uint16 millimetres, or float32 metres with NaN,
    inf or 0 where there is no reading); boxes: [n, 4] xyxy pixel
    edges in the colour image, of ``image_size`` (width, height) when it differs from the depth
    image's (aligned, other resolution); intrinsics: the depth image's; expected: [n] distances
    (metres) the boxes' objects were last placed at, 0 where unknown (object_surfaces). The centre is
    the box centre back-projected to the object surface's median depth; the size is the box's extent
    at that depth and the surface's depth spread (10th to 90th percentile). Returns BoxesIn3D.
    """
    settings = settings or DepthSettings()
    height, width = depth.shape
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if image_size is not None and tuple(image_size) != (width, height):
        boxes = boxes * np.array([width / image_size[0], height / image_size[1]] * 2)
    if len(boxes):
        distances, spreads = object_surfaces(*_sample_inner_parts(depth, encoding, boxes, settings), settings,
                                             expected)
    else:
        distances, spreads = np.zeros(0), np.zeros(0)
    centres = back_project(box_centres(boxes), distances, intrinsics)
    extents = (boxes[:, 2:] - boxes[:, :2]) * distances[:, None] / intrinsics.focal_lengths
    sizes = np.concatenate([extents, spreads[:, None]], axis=1)
    return BoxesIn3D(centres=centres, sizes=sizes, valid=np.isfinite(distances))


class TrackPlacer:
    """locate_boxes for one camera's frames in order, each tracked box read at the surface nearest to where
    its track was placed the frame before.

    A box may hold two objects at a time (the model sometimes answers two overlapping objects with
    one box, and that box continues one of their tracks); the nearest surface would then move the
    track to the nearer object for those frames. A track's own last distance tells which is its.
    """

    def __init__(self, settings=None):
        self.settings = settings or DepthSettings()
        self._last_distances = {}  # track id -> metres, of the previous frame's placed tracks

    def locate(self, depth, boxes, ids, intrinsics, image_size=None, encoding="32FC1"):
        """locate_boxes of ``boxes`` [n, 4] with their track ids [n] (falsy, e.g. "" or 0: untracked);
        returns BoxesIn3D."""
        expected = [self._last_distances.get(track_id, 0.0) if track_id else 0.0 for track_id in ids]
        placed = locate_boxes(depth, boxes, intrinsics, self.settings, image_size, encoding, expected)
        self._last_distances = {track_id: distance for track_id, distance, valid
                                in zip(ids, placed.centres[:, 2].tolist(), placed.valid.tolist()) if track_id and valid}
        return placed
