"""A linear Kalman filter, and the constant-velocity box model that SORT tracks with.

Kalman (1960) estimates a hidden state ``x`` from noisy measurements ``z`` when both evolve linearly:

    x_t = F x_{t-1} + w,   w ~ N(0, Q)      (motion model)
    z_t = H x_t + v,       v ~ N(0, R)      (measurement model)

The filter keeps a Gaussian belief ``N(x, P)`` and alternates two steps.

Predict (before the frame's measurement arrives):

    x⁻ = F x                          P⁻ = F P Fᵀ + Q

Update (with the measurement ``z``):

    y = z - H x⁻                      innovation: what the prediction failed to explain
    S = H P⁻ Hᵀ + R                   covariance of the innovation
    K = P⁻ Hᵀ S⁻¹                     Kalman gain
    x = x⁻ + K y
    P = (I - K H) P⁻ (I - K H)ᵀ + K R Kᵀ

The last line is Joseph's form of the covariance update; with the optimal gain it equals the shorter
``(I - K H) P⁻`` but stays symmetric and positive semi-definite under rounding (filterpy, which the
reference SORT code uses, writes it the same way).

SORT (Bewley et al. 2016) tracks each object with a 7-dimensional state
``x = (cx, cy, s, r, vx, vy, vs)``: the box centre, its area ``s = w h``, its aspect ratio ``r = w / h``,
and the velocities of the centre and of the area (the aspect ratio is assumed constant). A detection
gives the first four. :func:`sort_box_model` returns the matrices, with the values of the reference
implementation.

Taught in: book/03_detection/08_tracking.ipynb.
"""

from __future__ import annotations

import dataclasses

import torch

from companion.detection.boxes import check_boxes

STATE_SIZE = 7  # (cx, cy, s, r, vx, vy, vs)
MEASUREMENT_SIZE = 4  # (cx, cy, s, r)


def box_to_measurement(boxes: torch.Tensor) -> torch.Tensor:
    """Convert ``xyxy`` boxes to SORT's measurement ``(cx, cy, s, r)``: centre, area, aspect ratio.

    Args:
        boxes: ``(N, 4)`` boxes in ``xyxy`` format with positive width and height.

    Returns:
        ``(N, 4)`` measurements, on the input's device and dtype.
    """
    check_boxes(boxes, "boxes")
    width = boxes[:, 2] - boxes[:, 0]  # (N,)
    height = boxes[:, 3] - boxes[:, 1]  # (N,)
    if (height <= 0).any():
        raise ValueError("boxes has boxes of zero height; the aspect ratio w / h needs h > 0: "
                         "drop degenerate boxes first.")
    center_x = boxes[:, 0] + width / 2
    center_y = boxes[:, 1] + height / 2
    return torch.stack([center_x, center_y, width * height, width / height], dim=1)  # (N, 4)


def state_to_box(states: torch.Tensor) -> torch.Tensor:
    """Convert SORT states (or measurements) back to ``xyxy`` boxes: ``w = sqrt(s r)``, ``h = s / w``.

    A state with a negative area gives NaN coordinates; the tracker drops such tracks.

    Args:
        states: ``(N, 4)`` measurements or ``(N, 7)`` states; only the first four columns are used.

    Returns:
        ``(N, 4)`` boxes in ``xyxy`` format.
    """
    if states.dim() != 2 or states.shape[1] < MEASUREMENT_SIZE:
        raise ValueError(f"states must have shape (N, 4) or (N, 7), got {tuple(states.shape)}.")
    center_x, center_y, area, aspect = states[:, :4].unbind(dim=1)  # four (N,) columns
    width = torch.sqrt(area * aspect)  # (N,)
    height = area / width  # (N,)
    return torch.stack([center_x - width / 2, center_y - height / 2,
                        center_x + width / 2, center_y + height / 2], dim=1)  # (N, 4)


@dataclasses.dataclass
class LinearGaussianModel:
    """The matrices of a linear-Gaussian motion and measurement model (state size D, measurement M)."""

    transition: torch.Tensor  # F (D, D): x_t = F x_{t-1}
    observation: torch.Tensor  # H (M, D): z = H x
    process_noise: torch.Tensor  # Q (D, D): covariance of the motion model's error
    measurement_noise: torch.Tensor  # R (M, M): covariance of the measurement's error
    initial_covariance: torch.Tensor  # P_0 (D, D): uncertainty of a state initialised from one measurement


def sort_box_model(dtype: torch.dtype = torch.float64,
                   device: torch.device | str = "cpu") -> LinearGaussianModel:
    """SORT's constant-velocity model over ``(cx, cy, s, r, vx, vy, vs)``, one time step per frame.

    ``F`` adds each velocity to its quantity (``cx += vx``, ``cy += vy``, ``s += vs``); ``H`` reads the
    first four entries. The noise values are those of the reference SORT code: the area and aspect
    ratio are measured less reliably than the centre (``R = diag(1, 1, 10, 10)``), the velocities start
    very uncertain because one box says nothing about them (``P_0 = diag(10, 10, 10, 10, 1e4, 1e4, 1e4)``),
    and the velocities change slowly (``Q = diag(1, 1, 1, 1, 0.01, 0.01, 1e-4)``).

    Returns:
        A :class:`LinearGaussianModel` with ``F (7, 7)``, ``H (4, 7)``, ``Q (7, 7)``, ``R (4, 4)``,
        ``P_0 (7, 7)``.
    """
    kwargs = {"dtype": dtype, "device": device}
    transition = torch.eye(STATE_SIZE, **kwargs)  # (7, 7)
    transition[0, 4] = transition[1, 5] = transition[2, 6] = 1.0  # position += velocity
    observation = torch.eye(MEASUREMENT_SIZE, STATE_SIZE, **kwargs)  # (4, 7) = [I 0]
    process_noise = torch.diag(torch.tensor([1, 1, 1, 1, 1e-2, 1e-2, 1e-4], **kwargs))  # (7, 7)
    measurement_noise = torch.diag(torch.tensor([1.0, 1.0, 10.0, 10.0], **kwargs))  # (4, 4)
    initial_covariance = torch.diag(torch.tensor([10, 10, 10, 10, 1e4, 1e4, 1e4], **kwargs))  # (7, 7)
    return LinearGaussianModel(transition, observation, process_noise, measurement_noise, initial_covariance)


class KalmanFilter:
    """A linear Kalman filter holding one Gaussian belief ``N(x, P)``.

    Args:
        model: the matrices ``F, H, Q, R`` and the initial covariance ``P_0``.
        initial_state: ``(D,)`` the first state estimate ``x_0``.

    Attributes:
        state: ``(D,)`` current estimate ``x``.
        covariance: ``(D, D)`` its covariance ``P``.
    """

    def __init__(self, model: LinearGaussianModel, initial_state: torch.Tensor) -> None:
        size = model.transition.shape[0]
        if initial_state.shape != (size,):
            raise ValueError(f"initial_state must have shape ({size},) to match the model's F, "
                             f"got {tuple(initial_state.shape)}.")
        self.model = model
        self.state = initial_state.to(model.transition).clone()  # (D,)
        self.covariance = model.initial_covariance.clone()  # (D, D)

    def predict(self) -> torch.Tensor:
        """Advance one step: ``x⁻ = F x``, ``P⁻ = F P Fᵀ + Q``. Returns the predicted state ``(D,)``."""
        F, Q = self.model.transition, self.model.process_noise
        self.state = F @ self.state  # (D,)
        self.covariance = F @ self.covariance @ F.T + Q  # (D, D)
        return self.state

    def update(self, measurement: torch.Tensor) -> torch.Tensor:
        """Correct the prediction with a measurement ``z`` of shape ``(M,)``. Returns the new state ``(D,)``."""
        H, R = self.model.observation, self.model.measurement_noise
        if measurement.shape != (H.shape[0],):
            raise ValueError(f"measurement must have shape ({H.shape[0]},), got {tuple(measurement.shape)}.")
        innovation = measurement.to(self.state) - H @ self.state  # (M,) y = z - H x⁻
        innovation_covariance = H @ self.covariance @ H.T + R  # (M, M) S
        # K = P⁻ Hᵀ S⁻¹, computed as the solution of S Kᵀ = H P⁻ (both S and P⁻ are symmetric).
        gain = torch.linalg.solve(innovation_covariance, H @ self.covariance).T  # (D, M)
        self.state = self.state + gain @ innovation  # (D,)
        identity_minus_kh = torch.eye(self.state.shape[0]).to(self.state) - gain @ H  # (D, D)
        self.covariance = (identity_minus_kh @ self.covariance @ identity_minus_kh.T
                           + gain @ R @ gain.T)  # (D, D) Joseph form
        return self.state
