"""Constant-velocity Kalman filters for image boxes, one per track, run together as arrays.

State of a box: (cx, cy, w, h) in pixels and their velocities in pixels per second. Time is in
seconds rather than frames, so a dropped frame, a slower camera or a replayed recording predict
by the time that really passed. The noise follows ByteTrack's (and SORT's) filter: standard
deviations proportional to the box's size, so that a near, large object may move and grow by
more pixels than a far, small one.
"""

import numpy as np

# ByteTrack's noise per frame as fractions of the box size: measurement and position drift 1/20,
# velocity drift 1/160. Restated per second at the 30 frames per second it was tuned for.
_REFERENCE_RATE_HZ = 30.0
_POSITION_STD = 1.0 / 20.0
_VELOCITY_STD = 1.0 / 160.0 * _REFERENCE_RATE_HZ  # box sizes per second, per frame of drift
_MEASURED = 4


def boxes_to_measurements(boxes):
    """xyxy [n, 4] -> (cx, cy, w, h) [n, 4]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2.0, boxes[:, 2:] - boxes[:, :2]], axis=1)


def _size(measurements):
    """[n] box size (geometric mean of w and h, at least 1 px) that scales the noise."""
    return np.sqrt(np.maximum(measurements[:, 2], 1.0) * np.maximum(measurements[:, 3], 1.0))


class BoxKalman:
    """Kalman filters of n boxes, rows in the caller's track order.

    The four coordinates move independently in this model (no term couples cx with h), so the
    8x8 covariance of a box is four 2x2 blocks, one per coordinate: kept as their three distinct
    entries, predict and update are elementwise over [n, 4] arrays. means: [n, 4] (cx, cy, w, h)
    and velocities [n, 4] per second; pp, pv, vv: [n, 4] position variance, position-velocity
    covariance and velocity variance of each coordinate.
    """

    def __init__(self):
        self.means = np.zeros((0, _MEASURED))
        self.velocities = np.zeros((0, _MEASURED))
        self.pp, self.pv, self.vv = np.zeros((0, _MEASURED)), np.zeros((0, _MEASURED)), np.zeros((0, _MEASURED))

    def __len__(self):
        return len(self.means)

    def add(self, boxes):
        """Start filters at the boxes (xyxy [m, 4] pixels), standing still, appended after the others."""
        measured = boxes_to_measurements(boxes)
        size = np.repeat(_size(measured)[:, None], _MEASURED, axis=1)
        self.means = np.concatenate([self.means, measured])
        self.velocities = np.concatenate([self.velocities, np.zeros_like(measured)])
        # ByteTrack starts with twice the position noise and ten times the velocity noise.
        self.pp = np.concatenate([self.pp, (2.0 * _POSITION_STD * size) ** 2])
        self.pv = np.concatenate([self.pv, np.zeros_like(measured)])
        self.vv = np.concatenate([self.vv, (10.0 * _VELOCITY_STD * size) ** 2])

    def keep(self, rows):
        """Keep only the filters selected by ``rows`` (bool mask [n] or indices), in that order."""
        self.means, self.velocities = self.means[rows], self.velocities[rows]
        self.pp, self.pv, self.vv = self.pp[rows], self.pv[rows], self.vv[rows]

    def hold_size(self, rows):
        """Stop the boxes at ``rows`` (bool mask [n] or indices) from growing or shrinking further.

        For a track that lost sight of its object: its last boxes shrank as the object went behind
        something, and that trend, carried on, would leave no box for it to be found again in.
        """
        self.velocities[rows, 2:] = 0.0

    def predict(self, dt_s):
        """Advance every filter by ``dt_s`` seconds (>= 0)."""
        if not len(self) or dt_s <= 0.0:
            return
        size = _size(self.means)[:, None]
        # Random-walk drift: variance grows with the number of reference frames that passed.
        frames = dt_s * _REFERENCE_RATE_HZ
        self.means = self.means + dt_s * self.velocities
        velocity_drift = dt_s * self.vv
        self.pp = self.pp + dt_s * (2.0 * self.pv + velocity_drift) + (_POSITION_STD * size) ** 2 * frames
        self.pv = self.pv + velocity_drift
        self.vv = self.vv + (_VELOCITY_STD * size) ** 2 * frames
        # A box cannot shrink below a pixel however fast it was shrinking.
        np.maximum(self.means[:, 2:], 1.0, out=self.means[:, 2:])

    def update(self, rows, boxes):
        """Correct the filters at ``rows`` (indices [m]) with measured boxes (xyxy [m, 4] pixels)."""
        # Every filter is corrected, those not measured with a gain of 0 (which leaves them as they are): on a few
        # dozen boxes, whole arrays cost less than gathering the rows and scattering them back.
        measured = np.zeros((len(self), _MEASURED))
        measured[rows] = boxes_to_measurements(boxes)
        is_measured = np.zeros((len(self), 1))
        is_measured[rows] = 1.0
        innovation = measured - self.means
        innovation_var = self.pp + (_POSITION_STD * _size(self.means))[:, None] ** 2
        gain_position, gain_velocity = self.pp / innovation_var * is_measured, self.pv / innovation_var * is_measured
        self.means = self.means + gain_position * innovation
        self.velocities = self.velocities + gain_velocity * innovation
        self.vv = self.vv - gain_velocity * self.pv
        self.pp, self.pv = self.pp - gain_position * self.pp, self.pv - gain_position * self.pv

    def boxes(self):
        """The filters' current boxes, xyxy [n, 4] pixels."""
        centre, half_size = self.means[:, :2], self.means[:, 2:] / 2.0
        return np.concatenate([centre - half_size, centre + half_size], axis=1)
