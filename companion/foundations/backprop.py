"""Backpropagation by hand: a two-layer MLP whose backward pass is the chain rule, written out.

The network is a binary classifier with one tanh hidden layer and one output logit, trained with
the mean binary cross-entropy. With ``N`` examples, ``D`` inputs and ``H`` hidden units
(row-vector convention; weight shapes as in ``torch.nn.Linear``, ``(out, in)``):

    Z1 = X W1^T + b1         (N, H)    hidden pre-activations
    A1 = tanh(Z1)            (N, H)    hidden features
    z  = A1 W2^T + b2        (N,)      output logits (W2 is (1, H), the output column squeezed)
    L  = mean(softplus(z) - t * z)     binary cross-entropy with logits, targets t in {0, 1}

and the backward pass, from the loss down:

    dL/dz  = (sigmoid(z) - t) / N                (N,)
    dL/dW2 = (dL/dz)^T A1                         (1, H)
    dL/db2 = sum_n dL/dz                          (1,)
    dL/dA1 = (dL/dz) W2                           (N, H)   an outer product: column times row
    dL/dZ1 = dL/dA1 * (1 - A1**2)                 (N, H)   since tanh'(z) = 1 - tanh(z)^2
    dL/dW1 = (dL/dZ1)^T X                         (H, D)
    dL/db1 = sum_n dL/dZ1                         (H,)

``tests/foundations/test_backprop.py`` checks every one of these against ``torch.autograd``.

Taught in: book/01_foundations/01_perceptron_xor.ipynb.
"""

from __future__ import annotations

import math

import torch


def binary_cross_entropy_with_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against targets, computed stably.

    ``-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))`` simplifies to ``softplus(z) - t z``, and
    ``softplus(z) = max(z, 0) + log(1 + exp(-|z|))`` never overflows. Equals
    ``torch.nn.functional.binary_cross_entropy_with_logits`` (mean reduction).

    Args:
        logits: ``(N,)`` logits.
        targets: ``(N,)`` targets in [0, 1], same dtype as the logits.

    Returns:
        The mean loss, a ``()`` tensor.

    Raises:
        ValueError: the shapes differ.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape.")
    softplus = logits.clamp(min=0) + torch.log1p(torch.exp(-logits.abs()))  # (N,)
    return (softplus - targets * logits).mean()  # ()


class TwoLayerMLP:
    """``D -> H (tanh) -> 1`` logit, with explicit parameter tensors and a hand-written backward.

    Parameters are plain tensors named as in the math, ``W1`` ``(H, D)``, ``b1`` ``(H,)``, ``W2``
    ``(1, H)``, ``b2`` ``(1,)``, initialised like ``torch.nn.Linear`` (uniform in
    ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``). :meth:`forward` caches what :meth:`backward` needs.

    Args:
        in_features: D, the input size.
        hidden_features: H, the number of hidden units.
        generator: random generator for the initial weights (seed it for reproducible runs).
        dtype: dtype of the parameters (float64 for gradient checks).
        device: device of the parameters.
    """

    def __init__(self, in_features: int = 2, hidden_features: int = 4, *,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        if in_features < 1 or hidden_features < 1:
            raise ValueError(f"in_features and hidden_features must be >= 1, got {in_features} and {hidden_features}.")
        self.in_features = in_features
        self.hidden_features = hidden_features

        def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
            bound = 1 / math.sqrt(fan_in)
            values = torch.rand(shape, generator=generator, dtype=torch.float64)  # on the CPU, like the generator
            return ((2 * values - 1) * bound).to(dtype=dtype, device=device)

        self.W1 = uniform((hidden_features, in_features), in_features)  # (H, D)
        self.b1 = uniform((hidden_features,), in_features)  # (H,)
        self.W2 = uniform((1, hidden_features), hidden_features)  # (1, H)
        self.b2 = uniform((1,), hidden_features)  # (1,)
        self.cache: dict[str, torch.Tensor] | None = None

    def parameters(self) -> dict[str, torch.Tensor]:
        """The parameter tensors by name: ``W1``, ``b1``, ``W2``, ``b2``."""
        return {"W1": self.W1, "b1": self.b1, "W2": self.W2, "b2": self.b2}

    def _forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.dim() != 2 or inputs.shape[1] != self.in_features:
            raise ValueError(f"inputs must have shape (N, {self.in_features}), got {tuple(inputs.shape)}.")
        hidden = torch.tanh(inputs @ self.W1.T + self.b1)  # (N, D) @ (D, H) -> (N, H)
        logits = (hidden @ self.W2.T + self.b2).squeeze(1)  # (N, H) @ (H, 1) -> (N, 1) -> (N,)
        return hidden, logits

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits for a batch, caching the inputs and hidden features for :meth:`backward`.

        Args:
            inputs: ``(N, D)`` inputs, same dtype as the parameters.

        Returns:
            ``(N,)`` logits.

        Raises:
            ValueError: inputs that are not ``(N, D)``.
        """
        hidden, logits = self._forward(inputs)
        self.cache = {"inputs": inputs, "hidden": hidden, "logits": logits}
        return logits

    __call__ = forward

    def backward(self, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of the mean binary cross-entropy of the last :meth:`forward` batch.

        Args:
            targets: ``(N,)`` targets in {0, 1} for the batch last passed to :meth:`forward`.

        Returns:
            ``{"W1": (H, D), "b1": (H,), "W2": (1, H), "b2": (1,)}``, the gradient of
            :func:`binary_cross_entropy_with_logits` with respect to each parameter.

        Raises:
            RuntimeError: :meth:`forward` was not called first.
            ValueError: targets whose shape is not ``(N,)``.
        """
        if self.cache is None:
            raise RuntimeError("call forward(inputs) before backward(targets).")
        inputs, hidden, logits = (self.cache[key].detach() for key in ("inputs", "hidden", "logits"))
        if targets.shape != logits.shape:
            raise ValueError(f"targets must have shape {tuple(logits.shape)} to match the last forward batch, "
                             f"got {tuple(targets.shape)}.")
        count = logits.shape[0]
        targets = targets.to(logits.dtype)
        grad_logits = (torch.sigmoid(logits) - targets) / count  # (N,)
        grad_W2 = grad_logits.unsqueeze(0) @ hidden  # (1, N) @ (N, H) -> (1, H)
        grad_b2 = grad_logits.sum().reshape(1)  # (1,)
        grad_hidden = grad_logits.unsqueeze(1) * self.W2.detach()  # (N, 1) * (1, H) -> (N, H)
        grad_preactivation = grad_hidden * (1 - hidden**2)  # (N, H), tanh' = 1 - tanh^2
        grad_W1 = grad_preactivation.T @ inputs  # (H, N) @ (N, D) -> (H, D)
        grad_b1 = grad_preactivation.sum(dim=0)  # (N, H) -> (H,)
        return {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class of each input: ``(N, D)`` to ``(N,)`` int64 in {0, 1} (logit > 0). Caches nothing."""
        _, logits = self._forward(inputs.to(self.W1.dtype))
        return (logits > 0).long()


def gradient_descent(model: TwoLayerMLP, inputs: torch.Tensor, labels: torch.Tensor, steps: int,
                     learning_rate: float) -> list[float]:
    """Full-batch gradient descent with the hand-written backward pass.

    Each step: forward, loss, :meth:`TwoLayerMLP.backward`, then ``p <- p - learning_rate * grad``
    for every parameter, in place.

    Args:
        model: the network to train (updated in place).
        inputs: ``(N, D)`` inputs (cast to the model's dtype).
        labels: ``(N,)`` labels in {0, 1}.
        steps: number of updates.
        learning_rate: step size.

    Returns:
        The loss before each update, ``steps`` floats.
    """
    inputs = inputs.to(model.W1.dtype)
    targets = labels.to(model.W1.dtype)  # (N,)
    losses = []
    for _ in range(steps):
        logits = model.forward(inputs)  # (N,)
        losses.append(float(binary_cross_entropy_with_logits(logits, targets)))
        gradients = model.backward(targets)
        for name, parameter in model.parameters().items():
            parameter.sub_(learning_rate * gradients[name])
    return losses
