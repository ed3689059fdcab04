"""Gradient-descent optimizers written as the papers write them: SGD, momentum, Nesterov, Adagrad,
Adadelta, RMSprop, Adam and AdamW.

Each class is a ``torch.optim.Optimizer`` (parameter groups, ``state_dict``, learning-rate schedulers
and ``companion.engine.fit`` work with it) with the hyperparameters and defaults of its
``torch.optim`` namesake (not its implementation switches such as ``foreach``, ``fused`` or
``maximize``), and follows the same trajectory (``tests/foundations/test_optim.py``).
Comments give each line in the paper's notation, with ``t`` the step number (from 1), ``g`` the
gradient, ``θ`` the parameters and ``η`` the learning rate, and say where PyTorch's formula
differs from the paper's. The ``torch.optim`` versions are faster (fused multi-tensor kernels).

Taught in: book/01_foundations/07_optimizers.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

Params = Iterable[Tensor] | Iterable[dict]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_lr_and_decay(lr: float, weight_decay: float) -> None:
    _check(lr >= 0, f"lr must be >= 0, got {lr}: a negative learning rate climbs the loss. "
                    "Pass a positive step size such as 1e-3.")
    _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}: a negative decay "
                              "grows the weights. Pass 0 to switch it off.")


def _check_eps(eps: float) -> None:
    _check(eps >= 0, f"eps must be >= 0, got {eps}; it only guards the division, e.g. 1e-8.")


def _check_average(name: str, value: float) -> None:
    _check(0 <= value < 1, f"{name} must be in [0, 1), got {value}: it is the weight of the past in "
                           f"an exponential moving average (1 would never update it). "
                           f"Typical values are 0.9 to 0.999.")


def _gradient(parameter: Tensor) -> Tensor:
    if parameter.grad.is_sparse:
        raise ValueError("these optimizers take dense gradients; for sparse embeddings use "
                         "torch.optim.SparseAdam or nn.Embedding(sparse=False).")
    return parameter.grad


class _Optimizer(torch.optim.Optimizer):
    """``step()`` for all optimizers below: each parameter with a gradient goes to ``_update``."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter that has a gradient, in place.

        Args:
            closure: re-evaluates the model and returns the loss (optional, as in ``torch.optim``).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    self._update(parameter, _gradient(parameter), self.state[parameter], group)
        return loss

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class SGD(_Optimizer):
    """Stochastic gradient descent (Robbins & Monro, 1951), optionally with momentum (Polyak, 1964)
    or Nesterov momentum (Nesterov, 1983; Sutskever et al., 2013), as ``torch.optim.SGD``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate ``η``.
        momentum: momentum factor ``μ`` (0: plain SGD).
        dampening: the new gradient enters the momentum buffer with weight ``1 - dampening``.
        weight_decay: L2 penalty ``λ``: ``λ θ`` is added to the gradient.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check(momentum >= 0, f"momentum must be >= 0, got {momentum}; 0.9 is the usual choice.")
        _check(not nesterov or (momentum > 0 and dampening == 0),
               "Nesterov momentum needs momentum > 0 and dampening = 0: pass e.g. momentum=0.9, "
               "dampening=0, or nesterov=False.")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            g = g + wd * p  # gradient of L(θ) + λ/2 ‖θ‖²
        if mu != 0:
            if "momentum_buffer" not in state:
                # PyTorch starts the buffer at g_1 itself, without dampening.
                buffer = state["momentum_buffer"] = g.clone()
            else:
                # b_t = μ b_{t-1} + (1 - τ) g_t. Polyak writes the same step with a velocity
                # v_t = θ_t - θ_{t-1}: θ_{t+1} = θ_t - η g_t + μ v_t; with constant η and τ = 0,
                # v_t = -η b_{t-1}. Sutskever et al. keep v = -η b, so in their form a change of η
                # affects only new gradients; in PyTorch's it rescales the whole buffer at once.
                buffer = state["momentum_buffer"]
                buffer.mul_(mu).add_(g, alpha=1 - group["dampening"])
            if group["nesterov"]:
                # Sutskever et al.'s Nesterov step, v_{t+1} = μ v_t - η ∇L(θ_t + μ v_t),
                # θ_{t+1} = θ_t + v_{t+1}, rewritten for the look-ahead point θ' = θ + μ v, so
                # that the gradient is taken at the stored parameters: θ' ← θ' - η (g + μ b_t).
                g = g + mu * buffer
            else:
                g = buffer
        p.sub_(lr * g)  # θ_{t+1} = θ_t - η g_t


class Adagrad(_Optimizer):
    """Adagrad (Duchi, Hazan & Singer, 2011), diagonal version, as ``torch.optim.Adagrad``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate ``η``.
        lr_decay: the step size at step t is ``η / (1 + (t - 1) lr_decay)`` (a PyTorch extra).
        weight_decay: L2 penalty ``λ`` added to the gradient.
        initial_accumulator_value: starting value of the sum of squared gradients.
        eps: ``δ`` in the paper, added to the square root.
    """

    def __init__(self, params: Params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check(lr_decay >= 0, f"lr_decay must be >= 0, got {lr_decay}; 0 switches it off.")
        _check(initial_accumulator_value >= 0, "initial_accumulator_value must be >= 0, got "
               f"{initial_accumulator_value}: it starts a sum of squares.")
        _check_eps(eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        t = state["step"]
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        lr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        state["sum"].add_(g * g)  # s_t = Σ_{τ ≤ t} g_τ², one sum per coordinate
        # θ_{t+1} = θ_t - η g_t / (δ + √s_t): the paper's H_t = δI + diag(√s_t) puts δ outside the
        # square root, and so does PyTorch.
        p.sub_(lr * g / (state["sum"].sqrt() + group["eps"]))


class Adadelta(_Optimizer):
    """Adadelta (Zeiler, 2012, Algorithm 1), as ``torch.optim.Adadelta``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: PyTorch's extra factor on Zeiler's update (1.0 gives the paper's method).
        rho: decay ``ρ`` of both moving averages.
        eps: ``ε``, added inside both square roots.
        weight_decay: L2 penalty ``λ`` added to the gradient.
    """

    def __init__(self, params: Params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check(0 <= rho <= 1, f"rho must be in [0, 1], got {rho}; Zeiler used 0.95.")
        _check_eps(eps)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(p)  # E[g²]
            state["acc_delta"] = torch.zeros_like(p)  # E[Δθ²]
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg.mul_(rho).add_((1 - rho) * g * g)  # E[g²]_t = ρ E[g²]_{t-1} + (1 - ρ) g_t²
        # Δθ_t = -(RMS[Δθ]_{t-1} / RMS[g]_t) g_t, with RMS[y] = √(E[y²] + ε)
        delta = -(acc_delta + eps).sqrt() / (square_avg + eps).sqrt() * g
        acc_delta.mul_(rho).add_((1 - rho) * delta * delta)  # E[Δθ²]_t = ρ E[Δθ²]_{t-1} + (1 - ρ) Δθ_t²
        # θ_{t+1} = θ_t + Δθ_t. PyTorch multiplies by lr here, after the average was updated with
        # the unscaled Δθ; the paper has no learning rate at all (lr = 1).
        p.add_(group["lr"] * delta)


class RMSprop(_Optimizer):
    """RMSprop (Hinton, Srivastava & Swersky, 2012, lecture 6e), as ``torch.optim.RMSprop``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: learning rate ``η``.
        alpha: decay of the moving average of squared gradients (the lecture used 0.9).
        eps: added to the square root, outside it (TensorFlow's ApplyRMSProp adds it inside).
        weight_decay: L2 penalty ``λ`` added to the gradient.
        momentum: momentum ``μ`` applied to the rescaled gradient (0: none).
        centered: divide by the estimated standard deviation of the gradient instead of its RMS
            (the variant of Graves, 2013, arXiv:1308.0850).
    """

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check_average("alpha", alpha)
        _check_eps(eps)
        _check(momentum >= 0, f"momentum must be >= 0, got {momentum}; 0 switches it off.")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p)
        state["step"] += 1
        alpha = group["alpha"]
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        # MeanSquare_t = α MeanSquare_{t-1} + (1 - α) g_t²   (no bias correction, unlike Adam)
        state["square_avg"].mul_(alpha).add_((1 - alpha) * g * g)
        mean_square = state["square_avg"]
        if group["centered"]:
            state["grad_avg"].mul_(alpha).add_((1 - alpha) * g)  # mean gradient ḡ_t
            mean_square = mean_square - state["grad_avg"] ** 2  # variance E[g²] - ḡ²
        scaled = g / (mean_square.sqrt() + group["eps"])  # g_t / (√MeanSquare_t + ε)
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).add_(scaled)  # momentum on the rescaled gradient
            scaled = buffer
        p.sub_(group["lr"] * scaled)  # θ_{t+1} = θ_t - η g_t / (√MeanSquare_t + ε)


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015, Algorithm 1), with L2 weight decay, as ``torch.optim.Adam``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: step size ``α``.
        betas: ``(β1, β2)``, decays of the first- and second-moment estimates, each in [0, 1).
        eps: ``ε``, added to the bias-corrected square root.
        weight_decay: L2 penalty ``λ`` added to the gradient (``AdamW`` decouples it).
        amsgrad: divide by the running maximum of the second moment (Reddi, Kale & Kumar, 2018).
    """

    decoupled_weight_decay = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check(len(betas) == 2, f"betas must be a pair (beta1, beta2), got {betas!r}.")
        _check_average("betas[0]", betas[0])
        _check_average("betas[1]", betas[1])
        _check_eps(eps)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)  # m_0 = 0
            state["exp_avg_sq"] = torch.zeros_like(p)  # v_0 = 0
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t, lr, wd = state["step"], group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if wd != 0:
            if self.decoupled_weight_decay:
                # AdamW: θ ← θ - η λ θ, outside the adaptive step. Loshchilov & Hutter write
                # θ_t = θ_{t-1} - η_t (α m̂/(√v̂ + ε) + λ θ_{t-1}) with η_t the schedule multiplier;
                # PyTorch multiplies λ by lr = α η_t, so its weight_decay is the paper's λ / α.
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p  # Adam: L2 penalty in the gradient, then rescaled by 1/√v̂ below
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)  # m_t = β1 m_{t-1} + (1 - β1) g_t   (first moment)
        v.mul_(beta2).add_((1 - beta2) * g * g)  # v_t = β2 v_{t-1} + (1 - β2) g_t²   (second moment)
        if group["amsgrad"]:
            # PyTorch keeps the maximum of the raw v_t and bias-corrects it; Reddi et al. take the
            # maximum of v_t without bias correction.
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        m_hat = m / (1 - beta1**t)  # m̂_t = m_t / (1 - β1^t)   (bias correction)
        v_hat = v / (1 - beta2**t)  # v̂_t = v_t / (1 - β2^t)
        p.sub_(lr * m_hat / (v_hat.sqrt() + group["eps"]))  # θ_t = θ_{t-1} - α m̂_t / (√v̂_t + ε)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Args are those of :class:`Adam`; ``weight_decay`` (default 1e-2) shrinks every weight by
    ``lr * weight_decay`` per step, independently of the gradient.
    """

    decoupled_weight_decay = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


def rosenbrock(point: Tensor) -> Tensor:
    """Rosenbrock's banana function ``(1 - x)² + 100 (y - x²)²``, minimum 0 at ``(1, 1)``.

    Args:
        point: ``(..., 2)`` coordinates ``(x, y)``.

    Returns:
        ``(...)`` function values.
    """
    x, y = point[..., 0], point[..., 1]  # (...) each
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def elongated_quadratic(point: Tensor, condition_number: float = 25.0, angle: float = math.pi / 6) -> Tensor:
    """``½ (u² + κ w²)`` in axes ``(u, w)`` rotated by ``angle``: Hessian eigenvalues 1 and κ.

    Args:
        point: ``(..., 2)`` coordinates ``(x, y)``.
        condition_number: ``κ``, the ratio of the largest to the smallest curvature.
        angle: rotation of the valley with respect to the x axis, in radians.

    Returns:
        ``(...)`` function values; the minimum is 0 at the origin.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    u = cos * point[..., 0] + sin * point[..., 1]  # (...) along the valley
    w = -sin * point[..., 0] + cos * point[..., 1]  # (...) across it
    return 0.5 * (u**2 + condition_number * w**2)


def optimize_point(objective: Callable[[Tensor], Tensor], start: tuple[float, float], steps: int,
                   optimizer: type[torch.optim.Optimizer], **hyperparameters) -> tuple[Tensor, Tensor]:
    """Minimize a function of two variables and record the path.

    Args:
        objective: maps a ``(2,)`` point to a scalar.
        start: the initial point.
        steps: number of optimizer steps.
        optimizer: an optimizer class, ours or ``torch.optim``'s.
        **hyperparameters: passed to the optimizer (``lr=...``).

    Returns:
        ``(steps + 1, 2)`` float64 points, the start first, and ``(steps + 1,)`` objective values.
    """
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)  # (2,)
    instance = optimizer([point], **hyperparameters)
    path, values = [point.detach().clone()], []
    for _ in range(steps):
        instance.zero_grad()
        value = objective(point)
        value.backward()
        values.append(value.detach())
        instance.step()
        path.append(point.detach().clone())
    values.append(objective(point.detach()))
    return torch.stack(path), torch.stack(values)  # (steps + 1, 2), (steps + 1,)
