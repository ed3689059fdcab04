"""Tests for companion/detection/kalman.py and tracking.py: the Kalman filter against the equations in
NumPy, assignment against brute force, SORT on perfect detections, CLEAR-MOT counts on hand-made
sequences and against py-motmetrics, the generators, bad input."""

import itertools
import math

import numpy as np
import pytest
import torch

from companion.detection.boxes import box_iou
from companion.detection.kalman import (
    KalmanFilter,
    LinearGaussianModel,
    box_to_measurement,
    sort_box_model,
    state_to_box,
)
from companion.detection.tracking import (
    Sort,
    associate,
    greedy_assignment,
    linear_assignment,
    mot_metrics,
    moving_boxes_sequence,
    simulate_detections,
)


def random_spd(size: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(size, size, generator=generator, dtype=torch.float64)
    return a @ a.T + size * torch.eye(size, dtype=torch.float64)


# ---------------------------------------------------------------------------------- Kalman filter

def numpy_kalman(F, H, Q, R, x, P, measurements):
    """The textbook equations, written directly in NumPy (explicit inverse, short covariance update)."""
    states = []
    for z in measurements:
        x, P = F @ x, F @ P @ F.T + Q
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        x = x + K @ (z - H @ x)
        P = (np.eye(len(x)) - K @ H) @ P
        states.append(x)
    return np.stack(states), P


@pytest.mark.parametrize("state_size, measurement_size", [(2, 1), (4, 2), (7, 4)])
def test_kalman_filter_equals_numpy_equations(state_size, measurement_size):
    generator = torch.Generator().manual_seed(state_size)
    F = torch.eye(state_size, dtype=torch.float64) + 0.1 * torch.randn(state_size, state_size, generator=generator,
                                                                       dtype=torch.float64)
    H = torch.randn(measurement_size, state_size, generator=generator, dtype=torch.float64)
    model = LinearGaussianModel(F, H, random_spd(state_size, generator), random_spd(measurement_size, generator),
                                random_spd(state_size, generator))
    x0 = torch.randn(state_size, generator=generator, dtype=torch.float64)
    measurements = torch.randn(20, measurement_size, generator=generator, dtype=torch.float64)
    kalman = KalmanFilter(model, x0)
    ours = []
    for z in measurements:
        kalman.predict()
        ours.append(kalman.update(z).clone())
    reference, reference_covariance = numpy_kalman(*(m.numpy() for m in (F, H, model.process_noise,
                                                                            model.measurement_noise)),
                                                   x0.numpy(), model.initial_covariance.numpy(), measurements.numpy())
    np.testing.assert_allclose(torch.stack(ours).numpy(), reference, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kalman.covariance.numpy(), reference_covariance, rtol=1e-8, atol=1e-9)
    assert torch.allclose(kalman.covariance, kalman.covariance.T)  # Joseph form keeps P symmetric


def test_sort_model_matrices():
    model = sort_box_model()
    state = torch.tensor([10.0, 20.0, 300.0, 0.5, 2.0, -1.0, 5.0], dtype=torch.float64)
    assert model.transition @ state == pytest.approx([12.0, 19.0, 305.0, 0.5, 2.0, -1.0, 5.0])
    assert model.observation @ state == pytest.approx(state[:4].tolist())
    assert torch.equal(model.measurement_noise.diag(), torch.tensor([1.0, 1.0, 10.0, 10.0], dtype=torch.float64))


def test_kalman_filter_learns_a_constant_velocity():
    generator = torch.Generator().manual_seed(0)
    velocity = torch.tensor([2.0, -1.5], dtype=torch.float64)
    start = torch.tensor([20.0, 80.0, 50.0, 110.0], dtype=torch.float64)  # 30 x 30 box
    kalman = None
    for t in range(40):
        box = start + torch.cat([velocity, velocity]) * t + 0.3 * torch.randn(4, generator=generator,
                                                                             dtype=torch.float64)
        measurement = box_to_measurement(box[None])[0]
        if kalman is None:
            kalman = KalmanFilter(sort_box_model(), torch.cat([measurement, torch.zeros(3, dtype=torch.float64)]))
            continue
        kalman.predict()
        kalman.update(measurement)
    assert kalman.state[4:6].tolist() == pytest.approx(velocity.tolist(), abs=0.1)
    kalman.predict()
    next_box = start + torch.cat([velocity, velocity]) * 40
    assert box_iou(state_to_box(kalman.state[None]), next_box[None].float().double()).item() > 0.9


def test_box_state_round_trip():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 7.0, 45.0, 17.0]], dtype=torch.float64)
    measurement = box_to_measurement(boxes)
    assert measurement[0].tolist() == pytest.approx([5.0, 10.0, 200.0, 0.5])
    assert torch.allclose(state_to_box(measurement), boxes)


# ---------------------------------------------------------------------------------- assignment

def brute_force_cost(cost: torch.Tensor) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, cols[i]].item() for i in range(n)) for cols in itertools.permutations(range(m), n))
    return brute_force_cost(cost.T)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (3, 3), (4, 2), (5, 5)])
def test_linear_assignment_equals_brute_force(n, m):
    generator = torch.Generator().manual_seed(10 * n + m)
    for _ in range(5):
        cost = torch.rand(n, m, generator=generator, dtype=torch.float64)
        pairs = linear_assignment(cost)
        assert pairs.shape == (min(n, m), 2)
        assert len(set(pairs[:, 0].tolist())) == len(set(pairs[:, 1].tolist())) == min(n, m)
        assert cost[pairs[:, 0], pairs[:, 1]].sum().item() == pytest.approx(brute_force_cost(cost))
        greedy = greedy_assignment(cost)
        assert greedy.shape == (min(n, m), 2)
        assert cost[greedy[:, 0], greedy[:, 1]].sum().item() >= brute_force_cost(cost) - 1e-12


def test_greedy_is_not_always_optimal():
    cost = torch.tensor([[1.0, 2.0], [2.0, 100.0]])
    assert greedy_assignment(cost).tolist() == [[0, 0], [1, 1]]  # cost 101
    assert linear_assignment(cost).tolist() == [[0, 1], [1, 0]]  # cost 4


def test_associate_refuses_low_iou_pairs():
    detections = torch.tensor([[0.0, 0, 10, 10], [50.0, 50, 60, 60], [100.0, 0, 110, 10]])
    predictions = torch.tensor([[1.0, 1, 11, 11], [54.0, 54, 64, 64]])  # IoU 0.68 and 0.10
    matches, free_detections, free_tracks = associate(detections, predictions, iou_threshold=0.3)
    assert matches.tolist() == [[0, 0]]
    assert free_detections.tolist() == [1, 2] and free_tracks.tolist() == [1]
    empty = associate(torch.zeros(0, 4), predictions, 0.3)
    assert empty[0].shape == (0, 2) and empty[2].tolist() == [0, 1]


# ---------------------------------------------------------------------------------- SORT

def first_frames(gt_frames):
    first = {}
    for t, frame in enumerate(gt_frames):
        for object_id in frame[:, 4].long().tolist():
            first.setdefault(object_id, t)
    return first


@pytest.mark.parametrize("motion_model", [True, False])
def test_sort_with_perfect_detections_keeps_one_id_per_object(motion_model):
    gt = moving_boxes_sequence(60, 4, canvas_size=160, seed=0)
    tracker = Sort(motion_model=motion_model)
    hypotheses = [tracker.update(frame[:, :4]) for frame in gt]
    metrics = mot_metrics(gt, hypotheses)
    # every object is present from frame 0, and the first min_hits frames report new tracks at once
    assert (metrics["misses"], metrics["false_positives"], metrics["id_switches"]) == (0, 0, 0)
    assert metrics["mota"] == 1.0 and metrics["num_objects"] == 240
    assert metrics["motp"] > 0.95
    assert sorted({int(i) for frame in hypotheses for i in frame[:, 4]}) == [1, 2, 3, 4]


def test_sort_warm_up_misses_objects_that_enter_late():
    gt = moving_boxes_sequence(80, 5, canvas_size=200, seed=3, enter_leave=True)
    tracker = Sort(min_hits=3)
    metrics = mot_metrics(gt, [tracker.update(frame[:, :4]) for frame in gt])
    # an object entering at frame t is reported from frame t + 3 on (its 4th hit), unless frame t + k is
    # among the first three frames of the video, which report every track
    expected_misses = sum(sum(1 for k in range(3) if t + k >= 3) for t in first_frames(gt).values())
    assert expected_misses > 0
    assert metrics["misses"] == expected_misses
    assert metrics["false_positives"] == 0 and metrics["id_switches"] == 0
    assert metrics["mota"] == pytest.approx(1 - expected_misses / metrics["num_objects"])


def test_sort_output_format_and_empty_frames():
    tracker = Sort()
    out = tracker.update(torch.zeros(0, 5))
    assert out.shape == (0, 5) and out.dtype == torch.float32
    out = tracker.update(torch.tensor([[0.0, 0, 10, 10, 0.9], [20.0, 20, 30, 30, 0.8]]))
    assert out[:, 4].tolist() == [1.0, 2.0]
    assert torch.allclose(out[:, :4], torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), atol=1e-4)
    scored = Sort().update(torch.tensor([[0.0, 0, 10, 10]]), scores=torch.tensor([0.5]))
    assert scored.shape == (1, 5)


def test_sort_deletes_tracks_after_max_age():
    box = torch.tensor([[0.0, 0, 10, 10]])
    tracker = Sort(max_age=1, min_hits=0)
    assert tracker.update(box)[:, 4].tolist() == [1.0]
    tracker.update(torch.zeros(0, 4))  # one missed frame: the track survives
    assert tracker.update(box)[:, 4].tolist() == [1.0]
    tracker.update(torch.zeros(0, 4))
    tracker.update(torch.zeros(0, 4))  # two missed frames: deleted
    assert tracker.update(box)[:, 4].tolist() == [2.0]


# ---------------------------------------------------------------------------------- CLEAR-MOT

def frame(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def test_mot_metrics_hand_made_sequence():
    gt = [frame([0, 0, 10, 10, 1], [50, 50, 60, 60, 2]),
          frame([1, 0, 11, 10, 1], [51, 50, 61, 60, 2]),
          frame([2, 0, 12, 10, 1], [52, 50, 62, 60, 2]),
          frame([3, 0, 13, 10, 1])]
    hyp = [frame([0, 0, 10, 10, 7], [50, 50, 60, 60, 8]),
           frame([1, 0, 11, 10, 7], [100, 100, 110, 110, 9]),  # object 2 missed, one false positive
           frame([2, 0, 12, 10, 7], [52, 50, 62, 60, 5]),  # object 2 found again by a new id: switch
           frame([3, 0, 13, 10, 5])]  # object 1 taken over by id 5: switch
    metrics = mot_metrics(gt, hyp)
    assert metrics["num_objects"] == 7 and metrics["num_matches"] == 6
    assert (metrics["misses"], metrics["false_positives"], metrics["id_switches"]) == (1, 1, 2)
    assert metrics["mota"] == pytest.approx(1 - 4 / 7)
    assert metrics["motp"] == pytest.approx(1.0)


def test_mot_metrics_keeps_the_previous_correspondence():
    gt = [frame([0, 0, 10, 10, 1]), frame([0, 0, 10, 10, 1])]
    hyp = [frame([0, 0, 10, 8, 1]),  # IoU 0.8
           frame([0, 0, 10, 6, 1], [0, 0, 10, 10, 2])]  # IoU 0.6 with the old id, 1.0 with a new one
    metrics = mot_metrics(gt, hyp)
    assert (metrics["id_switches"], metrics["false_positives"], metrics["misses"]) == (0, 1, 0)
    assert metrics["motp"] == pytest.approx(0.7)


def test_mot_metrics_threshold_and_empty_frames():
    gt = [frame([0, 0, 10, 10, 1]), frame(), frame([0, 0, 10, 10, 1])]
    hyp = [frame([0, 0, 10, 4, 1]), frame(), frame([0, 0, 10, 5, 1])]  # IoU 0.4, then 0.5
    metrics = mot_metrics(gt, hyp, iou_threshold=0.5)
    assert (metrics["misses"], metrics["false_positives"], metrics["num_matches"]) == (1, 1, 1)
    assert metrics["motp"] == pytest.approx(0.5)
    assert mot_metrics([frame()], [frame()])["num_objects"] == 0


def test_mot_metrics_equals_py_motmetrics():
    mm = pytest.importorskip("motmetrics")
    for seed in range(3):
        gt = moving_boxes_sequence(50, 6, canvas_size=120, seed=seed, speed_range=(2.0, 6.0), enter_leave=True)
        detections = simulate_detections(gt, miss_rate=0.2, false_positive_rate=1.0, jitter=0.1, seed=seed)
        tracker = Sort(max_age=2, min_hits=1)
        hypotheses = [tracker.update(d) for d in detections]
        accumulator = mm.MOTAccumulator(auto_id=True)
        for g, h in zip(gt, hypotheses):
            distance = 1 - box_iou(g[:, :4].double(), h[:, :4].double()).numpy()  # (K, H)
            distance[distance > 0.5] = np.nan  # motmetrics.distances.iou_matrix(..., max_iou=0.5)
            accumulator.update(g[:, 4].long().tolist(), h[:, 4].long().tolist(), distance)
        summary = mm.metrics.create().compute(accumulator, name="seq", metrics=[
            "num_misses", "num_false_positives", "num_switches", "mota", "motp"]).iloc[0]
        ours = mot_metrics(gt, hypotheses, iou_threshold=0.5)
        assert ours["misses"] == summary["num_misses"]
        assert ours["false_positives"] == summary["num_false_positives"]
        assert ours["id_switches"] == summary["num_switches"]
        assert ours["mota"] == pytest.approx(summary["mota"], abs=1e-12)
        assert ours["motp"] == pytest.approx(1 - summary["motp"], abs=1e-9)


# ---------------------------------------------------------------------------------- generators

def test_generators_are_deterministic_and_valid():
    gt = moving_boxes_sequence(30, 5, canvas_size=100, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(gt, moving_boxes_sequence(30, 5, canvas_size=100, seed=1)))
    boxes = torch.cat(gt)
    assert boxes.dtype == torch.float32 and boxes.shape == (150, 5)
    assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 100).all()
    detections = simulate_detections(gt, 0.3, 1.0, 0.05, seed=2)
    again = simulate_detections(gt, 0.3, 1.0, 0.05, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(detections, again))
    exact = simulate_detections(gt, miss_rate=0.0, false_positive_rate=0.0, jitter=0.0)
    assert all(torch.allclose(d[:, :4], g[:, :4]) for d, g in zip(exact, gt))
    only_false = simulate_detections(gt, miss_rate=1.0, false_positive_rate=2.0, jitter=0.0, canvas_size=100)
    assert all((d[:, 4] <= 0.8).all() for d in only_false) and sum(len(d) for d in only_false) > 0


def test_moving_boxes_constant_velocity_without_noise():
    gt = moving_boxes_sequence(5, 1, canvas_size=1000, seed=0, velocity_noise=0.0, speed_range=(2.0, 2.0))
    steps = torch.stack([g[0, :2] for g in gt]).diff(dim=0)  # (4, 2)
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-4)
    assert math.isclose(steps[0].norm().item(), 2.0, rel_tol=1e-4)


# ---------------------------------------------------------------------------------- bad input

def test_bad_input_errors():
    with pytest.raises(ValueError, match="detections"):
        Sort().update(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        Sort().update(torch.tensor([[0.0, 0, float("nan"), 1]]))
    with pytest.raises(ValueError, match="x2 < x1"):
        Sort().update(torch.tensor([[10.0, 0, 0, 1]]))
    with pytest.raises(ValueError, match="scores"):
        Sort().update(torch.zeros(2, 4), scores=torch.zeros(3))
    with pytest.raises(ValueError, match="iou_threshold"):
        Sort(iou_threshold=1.5)
    with pytest.raises(ValueError, match="frames"):
        mot_metrics([frame()], [frame(), frame()])
    with pytest.raises(ValueError, match="repeated id"):
        mot_metrics([frame([0, 0, 1, 1, 1], [0, 0, 2, 2, 1])], [frame()])
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        mot_metrics([torch.zeros(1, 4)], [frame()])
    with pytest.raises(ValueError, match="NaN or inf"):
        linear_assignment(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="initial_state"):
        KalmanFilter(sort_box_model(), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="measurement"):
        KalmanFilter(sort_box_model(), torch.zeros(7, dtype=torch.float64)).update(torch.zeros(3))
    with pytest.raises(ValueError, match="zero height"):
        box_to_measurement(torch.tensor([[0.0, 0, 10, 0]]))
    with pytest.raises(ValueError, match="miss_rate"):
        simulate_detections([frame()], miss_rate=1.5)
