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
_STATE = 8
_MEASURED = 4


def boxes_to_measurements(boxes):
    """xyxy [n, 4] -> (cx, cy, w, h) [n, 4]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2.0, boxes[:, 2:] - boxes[:, :2]], axis=1)


def _size(measurements):
    """[n] box size (geometric mean of w and h, at least 1 px) that scales the noise."""
    return np.sqrt(np.clip(measurements[:, 2], 1.0, None) * np.clip(measurements[:, 3], 1.0, None))


class BoxKalman:
    """Kalman filters of n boxes: means [n, 8] and covariances [n, 8, 8], rows in the caller's track order."""

    def __init__(self):
        self.means = np.zeros((0, _STATE))
        self.covariances = np.zeros((0, _STATE, _STATE))

    def __len__(self):
        return len(self.means)

    def add(self, boxes):
        """Start filters at the boxes (xyxy [m, 4] pixels), standing still, appended after the others."""
        measured = boxes_to_measurements(boxes)
        size = _size(measured)[:, None]
        means = np.concatenate([measured, np.zeros_like(measured)], axis=1)
        # ByteTrack starts with twice the position noise and ten times the velocity noise.
        std = np.concatenate([np.repeat(2.0 * _POSITION_STD * size, 4, axis=1),
                              np.repeat(10.0 * _VELOCITY_STD * size, 4, axis=1)], axis=1)
        self.means = np.concatenate([self.means, means])
        self.covariances = np.concatenate([self.covariances, np.einsum("ni,ij->nij", std ** 2, np.eye(_STATE))])

    def keep(self, rows):
        """Keep only the filters selected by ``rows`` (bool mask [n] or indices), in that order."""
        self.means = self.means[rows]
        self.covariances = self.covariances[rows]

    def hold_size(self, rows):
        """Stop the boxes at ``rows`` (bool mask [n] or indices) from growing or shrinking further.

        For a track that lost sight of its object: its last boxes shrank as the object went behind
        something, and that trend, carried on, would leave no box for it to be found again in.
        """
        self.means[rows, 6:8] = 0.0

    def predict(self, dt_s):
        """Advance every filter by ``dt_s`` seconds (>= 0)."""
        if not len(self) or dt_s <= 0.0:
            return
        transition = np.eye(_STATE)
        transition[:_MEASURED, _MEASURED:] = dt_s * np.eye(_MEASURED)
        size = _size(self.means[:, :_MEASURED])[:, None]
        # Random-walk drift: variance grows with the number of reference frames that passed.
        frames = dt_s * _REFERENCE_RATE_HZ
        variance = np.concatenate([np.repeat((_POSITION_STD * size) ** 2 * frames, 4, axis=1),
                                   np.repeat((_VELOCITY_STD * size) ** 2 * frames, 4, axis=1)], axis=1)
        self.means = self.means @ transition.T
        self.covariances = transition @ self.covariances @ transition.T + np.einsum("ni,ij->nij", variance,
                                                                                   np.eye(_STATE))
        # A box cannot shrink below a pixel however fast it was shrinking.
        self.means[:, 2:4] = np.clip(self.means[:, 2:4], 1.0, None)

    def update(self, rows, boxes):
        """Correct the filters at ``rows`` (indices [m]) with measured boxes (xyxy [m, 4] pixels)."""
        rows = np.asarray(rows, np.int64)
        if not rows.size:
            return
        measured = boxes_to_measurements(boxes)
        means, covariances = self.means[rows], self.covariances[rows]
        noise = (_POSITION_STD * _size(means[:, :_MEASURED])) ** 2
        # H selects the measured half of the state, so H P H^T and P H^T are slices of P.
        innovation_cov = covariances[:, :_MEASURED, :_MEASURED] + noise[:, None, None] * np.eye(_MEASURED)
        gain = np.linalg.solve(innovation_cov, covariances[:, :_MEASURED, :]).transpose(0, 2, 1)
        self.means[rows] = means + np.einsum("nij,nj->ni", gain, measured - means[:, :_MEASURED])
        self.covariances[rows] = covariances - gain @ covariances[:, :_MEASURED, :]

    def boxes(self):
        """The filters' current boxes, xyxy [n, 4] pixels."""
        centre, size = self.means[:, :2], self.means[:, 2:4]
        return np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
