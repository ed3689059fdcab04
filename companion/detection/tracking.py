"""Tracking by detection: SORT, the CLEAR-MOT counts, and generated moving-object sequences.

A detector finds boxes in each frame independently; a tracker links them over time so that each
object keeps one identity. SORT (Bewley et al. 2016) does it with three small parts:

1. a Kalman filter per track over ``(cx, cy, s, r, vx, vy, vs)`` predicts where each box will be in
   the next frame (``companion.detection.kalman``);
2. the detections are assigned to the predicted boxes by maximising the total IoU with the Hungarian
   method (Kuhn 1955); pairs with IoU below ``iou_threshold`` are refused;
3. a matched track is corrected with its detection, an unmatched detection starts a new track, a track
   unmatched for more than ``max_age`` frames is deleted, and a track is only reported once it has
   been matched ``min_hits`` frames in a row (or during the first ``min_hits`` frames of the video).

``mot_metrics`` counts misses, false positives and identity switches as in Bernardin & Stiefelhagen
(2008) and combines them into MOTA and MOTP. ``moving_boxes_sequence`` and ``simulate_detections``
generate ground truth and imperfect detections to test trackers on.

Taught in: book/03_detection/08_tracking.ipynb.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from companion.detection.boxes import box_iou, check_boxes
from companion.detection.kalman import KalmanFilter, box_to_measurement, sort_box_model, state_to_box

Assignment = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Assignment
# ----------------------------------------------------------------------------------------------

def _check_cost(cost: torch.Tensor) -> None:
    if not isinstance(cost, torch.Tensor) or cost.dim() != 2:
        shape = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ValueError(f"cost must be a 2-D tensor (N, M), got {shape}.")
    if not torch.isfinite(cost).all():
        raise ValueError("cost contains NaN or inf; give forbidden pairs a large finite cost instead.")


def linear_assignment(cost: torch.Tensor) -> torch.Tensor:
    """Minimum-cost one-to-one assignment of rows to columns (the linear assignment problem).

    Kuhn's Hungarian method (1955) solves it exactly in polynomial time; SciPy's
    ``linear_sum_assignment`` solves the same problem with a faster shortest-augmenting-path variant
    (Crouse 2016). With ``N != M`` only ``min(N, M)`` pairs are formed.

    Args:
        cost: ``(N, M)`` finite costs.

    Returns:
        ``(K, 2)`` int64 ``(row, column)`` pairs, ``K = min(N, M)``, sorted by row.
    """
    _check_cost(cost)
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    pairs = np.stack([rows, cols], axis=1).astype(np.int64)  # (K, 2)
    return torch.from_numpy(pairs).to(cost.device)


def greedy_assignment(cost: torch.Tensor) -> torch.Tensor:
    """Greedy assignment: repeatedly take the cheapest pair whose row and column are both still free.

    Simpler than the Hungarian method and often equal in practice, but not always optimal.

    Args:
        cost: ``(N, M)`` finite costs.

    Returns:
        ``(K, 2)`` int64 ``(row, column)`` pairs, ``K = min(N, M)``, sorted by row.
    """
    _check_cost(cost)
    n_cols = cost.shape[1]
    order = torch.argsort(cost.flatten(), stable=True)  # (N * M,) cheapest first
    row_used, col_used, pairs = set(), set(), []
    for flat_index in order.tolist():
        row, col = divmod(flat_index, n_cols)
        if row not in row_used and col not in col_used:
            row_used.add(row)
            col_used.add(col)
            pairs.append((row, col))
    pairs.sort()
    return torch.tensor(pairs, dtype=torch.int64, device=cost.device).reshape(-1, 2)  # (K, 2)


def associate(detections: torch.Tensor, predictions: torch.Tensor, iou_threshold: float,
              assignment: Assignment = linear_assignment) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign detections to predicted track boxes by maximum total IoU, refusing pairs below a threshold.

    Args:
        detections: ``(N, 4)`` detected boxes, ``xyxy``.
        predictions: ``(T, 4)`` predicted track boxes, ``xyxy``.
        iou_threshold: a pair with IoU below this is not a match.
        assignment: ``linear_assignment`` (optimal) or ``greedy_assignment``.

    Returns:
        ``matches (K, 2)`` int64 ``(detection, track)`` pairs, ``unmatched_detections (N - K,)`` and
        ``unmatched_tracks (T - K,)`` int64 indices.
    """
    iou = box_iou(detections, predictions)  # (N, T)
    pairs = assignment(-iou) if iou.numel() else torch.empty(0, 2, dtype=torch.int64)  # (K', 2)
    good = iou[pairs[:, 0], pairs[:, 1]] >= iou_threshold  # (K',)
    matches = pairs[good].to(detections.device)  # (K, 2)
    detection_free = torch.ones(detections.shape[0], dtype=torch.bool, device=detections.device)
    track_free = torch.ones(predictions.shape[0], dtype=torch.bool, device=detections.device)
    detection_free[matches[:, 0]] = False
    track_free[matches[:, 1]] = False
    return matches, detection_free.nonzero().flatten(), track_free.nonzero().flatten()


# ----------------------------------------------------------------------------------------------
# SORT
# ----------------------------------------------------------------------------------------------

class Track:
    """One tracked object: a Kalman filter (or, without a motion model, its last box) and its counters.

    Attributes:
        track_id: the identity reported for this track (1, 2, ...).
        hit_streak: frames in a row in which the track was matched (reset after a missed frame).
        time_since_update: frames since the last match (0 right after a match).
    """

    def __init__(self, box: torch.Tensor, track_id: int, motion_model: bool = True) -> None:
        self.track_id = track_id
        self.motion_model = motion_model
        self.hits = 0
        self.hit_streak = 0
        self.time_since_update = 0
        self.last_box = box.double()  # (4,)
        if motion_model:
            initial_state = torch.zeros(7, dtype=torch.float64)  # (7,) velocities start at 0
            initial_state[:4] = box_to_measurement(self.last_box[None])[0]
            self.filter = KalmanFilter(sort_box_model(), initial_state)

    def predict(self) -> torch.Tensor:
        """Advance one frame and return the predicted box ``(4,)`` (NaN if the area became negative)."""
        if self.motion_model:
            state = self.filter.state
            if state[2] + state[6] <= 0:  # the area would become non-positive: stop shrinking
                state[6] = 0.0
            self.filter.predict()
        if self.time_since_update > 0:  # missed last frame: the streak is broken
            self.hit_streak = 0
        self.time_since_update += 1
        return self.box()

    def update(self, box: torch.Tensor) -> None:
        """Correct the track with its matched detection ``(4,)``."""
        self.time_since_update = 0
        self.hits += 1
        self.hit_streak += 1
        self.last_box = box.double()
        if self.motion_model:
            self.filter.update(box_to_measurement(self.last_box[None])[0])

    def box(self) -> torch.Tensor:
        """The current box estimate ``(4,)``, ``xyxy``."""
        if self.motion_model:
            return state_to_box(self.filter.state[None])[0]
        return self.last_box


class Sort:
    """SORT (Bewley et al. 2016): Kalman prediction, Hungarian IoU matching, simple track management.

    Follows the authors' reference implementation, with its defaults. Identities count from 1 per
    tracker (the reference code shares one counter between all trackers of a process).

    Args:
        max_age: a track unmatched for more than this many frames is deleted.
        min_hits: a track is reported once matched in this many consecutive frames; during the first
            ``min_hits`` frames of the video every matched track is reported.
        iou_threshold: minimum IoU between a detection and a predicted box to match them.
        motion_model: ``False`` replaces the Kalman prediction with the track's last matched box (the
            baseline without a motion model).
        assignment: ``linear_assignment`` (Hungarian, as SORT) or ``greedy_assignment``.
    """

    def __init__(self, max_age: int = 1, min_hits: int = 3, iou_threshold: float = 0.3,
                 motion_model: bool = True, assignment: Assignment = linear_assignment) -> None:
        if max_age < 0 or min_hits < 0:
            raise ValueError(f"max_age and min_hits must be >= 0, got {max_age} and {min_hits}.")
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}.")
        self.max_age, self.min_hits, self.iou_threshold = max_age, min_hits, iou_threshold
        self.motion_model, self.assignment = motion_model, assignment
        self.tracks: list[Track] = []
        self.frame_count = 0
        self._next_id = itertools.count(1)

    def update(self, detections: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        """Process one frame; call it for every frame, with an empty ``(0, 5)`` tensor if nothing was detected.

        Args:
            detections: ``(N, 5)`` rows ``[x1, y1, x2, y2, score]`` or ``(N, 4)`` boxes, ``xyxy``.
            scores: optional ``(N,)`` scores with ``(N, 4)`` boxes. SORT does not use them: filter
                detections by score before calling.

        Returns:
            ``(M, 5)`` float32 rows ``[x1, y1, x2, y2, track_id]`` of the tracks reported in this frame,
            sorted by ``track_id``.
        """
        is_tensor = isinstance(detections, torch.Tensor)
        if not is_tensor or detections.dim() != 2 or detections.shape[1] not in (4, 5):
            shape = tuple(detections.shape) if is_tensor else type(detections).__name__
            raise ValueError(f"detections must be a tensor (N, 5) [x1, y1, x2, y2, score] or (N, 4) boxes, "
                             f"got {shape}.")
        if scores is not None and (scores.dim() != 1 or scores.shape[0] != detections.shape[0]):
            raise ValueError(f"scores must have shape ({detections.shape[0]},), got {tuple(scores.shape)}.")
        boxes = detections[:, :4].double()  # (N, 4)
        check_boxes(boxes, "detections[:, :4]")
        self.frame_count += 1

        predicted = [track.predict() for track in self.tracks]  # T boxes (4,)
        alive = [not torch.isnan(box).any() for box in predicted]
        self.tracks = [track for track, ok in zip(self.tracks, alive) if ok]
        predicted = torch.stack([box for box, ok in zip(predicted, alive) if ok] or [boxes.new_zeros(0, 4)])
        predicted = predicted.reshape(-1, 4)  # (T, 4)

        matches, new_detections, _ = associate(boxes, predicted, self.iou_threshold, self.assignment)
        for detection_index, track_index in matches.tolist():
            self.tracks[track_index].update(boxes[detection_index])
        for detection_index in new_detections.tolist():
            self.tracks.append(Track(boxes[detection_index], next(self._next_id), self.motion_model))

        rows = []
        for track in self.tracks:
            confirmed = track.hit_streak >= self.min_hits or self.frame_count <= self.min_hits
            if track.time_since_update == 0 and confirmed:
                track_id = torch.tensor([float(track.track_id)], dtype=torch.float64)
                rows.append(torch.cat([track.box(), track_id]))  # (5,)
        self.tracks = [track for track in self.tracks if track.time_since_update <= self.max_age]
        if not rows:
            return torch.zeros(0, 5, dtype=torch.float32, device=detections.device)
        output = torch.stack(rows).float()  # (M, 5)
        return output[torch.argsort(output[:, 4])].to(detections.device)


# ----------------------------------------------------------------------------------------------
# CLEAR-MOT metrics
# ----------------------------------------------------------------------------------------------

def _check_frames(frames: list[torch.Tensor], name: str) -> None:
    if not isinstance(frames, (list, tuple)):
        raise ValueError(f"{name} must be a list with one (K, 5) tensor [x1, y1, x2, y2, id] per frame, "
                         f"got {type(frames).__name__}.")
    for t, frame in enumerate(frames):
        if not isinstance(frame, torch.Tensor) or frame.dim() != 2 or frame.shape[1] != 5:
            shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise ValueError(f"{name}[{t}] must be a (K, 5) tensor [x1, y1, x2, y2, id], got {shape}.")
        check_boxes(frame[:, :4].float(), f"{name}[{t}][:, :4]")
        if frame[:, 4].unique().numel() != frame.shape[0]:
            raise ValueError(f"{name}[{t}] has a repeated id; every row of a frame needs its own id.")


def mot_metrics(gt_sequence: list[torch.Tensor], hyp_sequence: list[torch.Tensor],
                iou_threshold: float = 0.5) -> dict:
    """CLEAR-MOT counts (Bernardin & Stiefelhagen 2008) with IoU as the similarity.

    In each frame an object and a hypothesis may be matched only if their IoU is at least
    ``iou_threshold``. First every object keeps the hypothesis it was last matched to, if that pair is
    still valid; the remaining objects and hypotheses are matched by the Hungarian method (as many
    pairs as possible, then the largest total IoU). A match whose hypothesis differs from the object's
    previous one is an identity switch; unmatched objects are misses, unmatched hypotheses false
    positives. ``MOTA = 1 - (misses + false positives + switches) / objects``; ``MOTP`` is the mean
    IoU of the matches. Same counts as ``py-motmetrics``.

    Args:
        gt_sequence: per frame a ``(K, 5)`` tensor ``[x1, y1, x2, y2, object_id]``.
        hyp_sequence: per frame a ``(H, 5)`` tensor ``[x1, y1, x2, y2, track_id]`` (e.g. ``Sort`` outputs).
        iou_threshold: minimum IoU for an object and a hypothesis to correspond.

    Returns:
        Dict with int ``"num_frames"``, ``"num_objects"`` (ground-truth boxes over all frames),
        ``"num_matches"``, ``"misses"``, ``"false_positives"``, ``"id_switches"``, and float ``"mota"``
        and ``"motp"`` (NaN without matches).
    """
    _check_frames(gt_sequence, "gt_sequence")
    _check_frames(hyp_sequence, "hyp_sequence")
    if len(gt_sequence) != len(hyp_sequence):
        raise ValueError(f"gt_sequence has {len(gt_sequence)} frames but hyp_sequence has {len(hyp_sequence)}; "
                         f"give one (possibly empty) tensor per frame to both.")
    last_match: dict[int, int] = {}  # object id -> hypothesis id it was last matched to
    counts = {"num_objects": 0, "num_matches": 0, "misses": 0, "false_positives": 0, "id_switches": 0}
    iou_sum = 0.0
    for gt, hyp in zip(gt_sequence, hyp_sequence):
        gt_ids, hyp_ids = gt[:, 4].long().tolist(), hyp[:, 4].long().tolist()
        iou = box_iou(gt[:, :4].double(), hyp[:, :4].double())  # (K, H)
        valid = iou >= iou_threshold  # (K, H)
        gt_free = [True] * len(gt_ids)
        hyp_free = [True] * len(hyp_ids)
        matched = []  # (object row, hypothesis row)
        # 1. keep the previous correspondences that are still valid
        for i, object_id in enumerate(gt_ids):
            if object_id in last_match and last_match[object_id] in hyp_ids:
                j = hyp_ids.index(last_match[object_id])
                if hyp_free[j] and valid[i, j]:
                    gt_free[i] = hyp_free[j] = False
                    matched.append((i, j))
        # 2. Hungarian on the rest: invalid pairs cost more than any set of valid ones
        rows = [i for i in range(len(gt_ids)) if gt_free[i]]
        cols = [j for j in range(len(hyp_ids)) if hyp_free[j]]
        if rows and cols:
            sub_iou, sub_valid = iou[rows][:, cols], valid[rows][:, cols]  # (K', H')
            forbidden = 2.0 * (min(len(rows), len(cols)) + 1)
            cost = torch.where(sub_valid, 1.0 - sub_iou, torch.full_like(sub_iou, forbidden))  # (K', H')
            for a, b in linear_assignment(cost).tolist():
                if sub_valid[a, b]:
                    i, j = rows[a], cols[b]
                    if gt_ids[i] in last_match and last_match[gt_ids[i]] != hyp_ids[j]:
                        counts["id_switches"] += 1
                    gt_free[i] = hyp_free[j] = False
                    matched.append((i, j))
        for i, j in matched:
            last_match[gt_ids[i]] = hyp_ids[j]
            iou_sum += float(iou[i, j])
        counts["num_objects"] += len(gt_ids)
        counts["num_matches"] += len(matched)
        counts["misses"] += sum(gt_free)
        counts["false_positives"] += sum(hyp_free)
    errors = counts["misses"] + counts["false_positives"] + counts["id_switches"]
    mota = 1.0 - errors / counts["num_objects"] if counts["num_objects"] else float("nan")
    motp = iou_sum / counts["num_matches"] if counts["num_matches"] else float("nan")
    return {"num_frames": len(gt_sequence), **counts, "mota": mota, "motp": motp}


# ----------------------------------------------------------------------------------------------
# Generated sequences
# ----------------------------------------------------------------------------------------------

def moving_boxes_sequence(num_frames: int = 100, num_objects: int = 5, canvas_size: int = 160, seed: int = 0,
                          *, size_range: tuple[float, float] = (20.0, 40.0),
                          speed_range: tuple[float, float] = (1.0, 4.0), velocity_noise: float = 0.1,
                          enter_leave: bool = False) -> list[torch.Tensor]:
    """Ground truth for boxes moving at nearly constant velocity and bouncing off the borders.

    Each object has a fixed width and height drawn from ``size_range``, a random start position and
    direction, and a speed (pixels per frame) from ``speed_range``; every frame its velocity receives
    Gaussian noise of standard deviation ``velocity_noise``. A box that would leave the canvas is
    reflected back and its velocity component flips.

    Args:
        num_frames: frames in the sequence.
        num_objects: objects; their ids are ``1..num_objects``.
        canvas_size: side of the square canvas in pixels.
        seed: seed of the generator; the same arguments give the same sequence.
        size_range: smallest and largest box side in pixels.
        speed_range: smallest and largest initial speed in pixels per frame.
        velocity_noise: standard deviation of the per-frame velocity change, pixels per frame.
        enter_leave: if True, each object is visible only during one interval of the sequence (at least
            a third of it), so objects enter and leave.

    Returns:
        ``num_frames`` float32 tensors ``(K_t, 5)`` of rows ``[x1, y1, x2, y2, id]``, sorted by id.
    """
    if num_frames < 1 or num_objects < 0:
        raise ValueError(f"need num_frames >= 1 and num_objects >= 0, got {num_frames} and {num_objects}.")
    if not 0 < size_range[0] <= size_range[1] < canvas_size:
        raise ValueError(f"size_range {size_range} must be increasing, positive and below "
                         f"canvas_size {canvas_size}.")
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    size = uniform(*size_range, num_objects, 2)  # (O, 2) width, height
    top_left = uniform(0, 1, num_objects, 2) * (canvas_size - size)  # (O, 2)
    angle = uniform(0, 2 * math.pi, num_objects)  # (O,)
    speed = uniform(*speed_range, num_objects)  # (O,)
    velocity = torch.stack([angle.cos(), angle.sin()], dim=1) * speed[:, None]  # (O, 2)
    length = torch.ceil(uniform(num_frames / 3, num_frames, num_objects)).long()  # (O,)
    start = (uniform(0, 1, num_objects) * (num_frames - length + 1)).long()  # (O,)
    if not enter_leave:
        start, length = torch.zeros_like(start), torch.full_like(length, num_frames)
    ids = torch.arange(1, num_objects + 1, dtype=torch.float64)  # (O,)

    frames = []
    for t in range(num_frames):
        if t > 0:
            velocity = velocity + velocity_noise * torch.randn(num_objects, 2, generator=generator,
                                                               dtype=torch.float64)  # (O, 2)
            top_left = top_left + velocity
            low, high = top_left < 0, top_left > canvas_size - size  # (O, 2) crossed a border
            top_left = torch.where(low, -top_left, top_left)
            top_left = torch.where(high, 2 * (canvas_size - size) - top_left, top_left)
            velocity = torch.where(low | high, -velocity, velocity)
        visible = (start <= t) & (t < start + length)  # (O,)
        rows = torch.cat([top_left, top_left + size, ids[:, None]], dim=1)[visible]  # (K_t, 5)
        frames.append(rows.float())
    return frames


def simulate_detections(gt_frames: list[torch.Tensor], miss_rate: float = 0.1, false_positive_rate: float = 0.5,
                        jitter: float = 0.05, seed: int = 0,
                        canvas_size: float | None = None) -> list[torch.Tensor]:
    """Imperfect detections made from ground truth: misses, false positives and noisy boxes.

    Each object is missed with probability ``miss_rate``. A detected box has its centre moved by
    Gaussian noise of ``jitter`` times its width (height) and its width (height) scaled by
    ``exp(N(0, jitter^2))``. Each frame adds a Poisson number (mean ``false_positive_rate``) of boxes at
    random places with sizes in the range of the ground-truth sizes. Scores are uniform in
    ``[0.5, 1]`` for true and ``[0.3, 0.8]`` for false detections.

    Args:
        gt_frames: per frame a ``(K, 5)`` tensor ``[x1, y1, x2, y2, id]``.
        miss_rate: probability that an object is not detected in a frame, in ``[0, 1]``.
        false_positive_rate: mean number of false detections per frame, ``>= 0``.
        jitter: relative standard deviation of the box noise, ``>= 0``.
        seed: seed of the generator; the same arguments give the same detections.
        canvas_size: side of the canvas for false positives; default: the largest ground-truth coordinate.

    Returns:
        One float32 tensor ``(D_t, 5)`` of rows ``[x1, y1, x2, y2, score]`` per frame.
    """
    _check_frames(gt_frames, "gt_frames")
    if not 0 <= miss_rate <= 1 or false_positive_rate < 0 or jitter < 0:
        raise ValueError(f"need miss_rate in [0, 1], false_positive_rate >= 0 and jitter >= 0, "
                         f"got {miss_rate}, {false_positive_rate} and {jitter}.")
    generator = torch.Generator().manual_seed(seed)
    all_boxes = torch.cat([frame[:, :4] for frame in gt_frames]).double()  # (sum K, 4)
    if canvas_size is None:
        canvas_size = float(all_boxes.max()) if all_boxes.numel() else 1.0
    sides = all_boxes[:, 2:] - all_boxes[:, :2] if all_boxes.numel() else torch.ones(1, 2, dtype=torch.float64)
    side_low, side_high = float(sides.min()), float(sides.max())

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    detections = []
    for frame in gt_frames:
        boxes = frame[:, :4].double()  # (K, 4)
        kept = boxes[rand(boxes.shape[0]) >= miss_rate]  # (D, 4)
        size = kept[:, 2:] - kept[:, :2]  # (D, 2)
        center = (kept[:, :2] + kept[:, 2:]) / 2 + jitter * size * torch.randn(
            kept.shape[0], 2, generator=generator, dtype=torch.float64)  # (D, 2)
        size = size * torch.exp(jitter * torch.randn(kept.shape[0], 2, generator=generator,
                                                     dtype=torch.float64))  # (D, 2)
        true_rows = torch.cat([center - size / 2, center + size / 2, 0.5 + 0.5 * rand(kept.shape[0], 1)], dim=1)
        num_false = int(torch.poisson(torch.tensor([float(false_positive_rate)]), generator=generator))
        false_size = side_low + (side_high - side_low) * rand(num_false, 2)  # (F, 2)
        false_top_left = rand(num_false, 2) * (canvas_size - false_size).clamp(min=0)  # (F, 2)
        false_scores = 0.3 + 0.5 * rand(num_false, 1)  # (F, 1)
        false_rows = torch.cat([false_top_left, false_top_left + false_size, false_scores], dim=1)  # (F, 5)
        detections.append(torch.cat([true_rows, false_rows]).float())  # (D + F, 5)
    return detections
