"""A scalar reverse-mode automatic differentiation engine, and a tiny MLP built on it.

Every arithmetic operation on a :class:`Value` returns a new ``Value`` that remembers its inputs
(its *parents*) and how to pass a gradient back to them. The values form a computational graph;
:meth:`Value.backward` visits it once, from the output down, in reverse topological order, and
applies the chain rule at every node. Only seven operations need a derivative of their own:
``+``, ``*``, ``**`` (numeric exponent), ``exp``, ``log``, ``tanh`` and ``relu``; subtraction,
negation and division are built from them.

``tests/foundations/test_autograd.py`` checks the gradients against ``torch.autograd`` on random
expressions built by :func:`random_expression`.

Taught in: book/01_foundations/03_autograd.ipynb.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

Number = int | float


class Value:
    """A scalar that records the operations applied to it, so that gradients can flow back.

    Args:
        data: the number.
        label: an optional name, shown by :func:`draw_graph`.

    Attributes:
        data: the number this node holds.
        grad: dL/d(this node) after :meth:`backward` on some output L. Leaves (values not computed
            from others, such as parameters) accumulate it over calls, as ``torch.Tensor.grad``
            does; set it back to 0 before the next backward pass.
    """

    __slots__ = ("data", "grad", "label", "_parents", "_op", "_backward")  # smaller, faster nodes

    def __init__(self, data: Number, label: str = "", *, _parents: tuple[Value, ...] = (),
                 _op: str = "") -> None:
        try:
            self.data = float(data)
        except (TypeError, ValueError):
            raise ValueError(f"Value holds a number, got {type(data).__name__}; pass an int or a "
                             "float, e.g. Value(3.0).") from None
        self.grad = 0.0
        self.label = label
        self._parents = _parents
        self._op = _op
        self._backward: Callable[[], None] = _pass_nothing_back  # replaced by each operation

    def __repr__(self) -> str:
        return f"Value(data={self.data:.4f}, grad={self.grad:.4f})"

    # -- the primitive operations: each sets how its output's gradient reaches its inputs ------

    def __add__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data + other.data, _parents=(self, other), _op="+")

        def _backward() -> None:  # d(a + b)/da = 1, d(a + b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = _as_value(other)
        out = Value(self.data * other.data, _parents=(self, other), _op="*")

        def _backward() -> None:  # d(a b)/da = b, d(a b)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value) or not isinstance(exponent, (int, float)):
            raise ValueError("** takes a plain int or float exponent, not a Value; for a variable "
                             "exponent write (b.log() * e).exp(), which is b ** e for b > 0.")
        if self.data < 0 and not float(exponent).is_integer():
            raise ValueError(f"{self.data} ** {exponent} is not a real number; a fractional power "
                             "needs a non-negative base.")
        if self.data == 0 and exponent < 0:
            raise ValueError(f"0 ** {exponent} divides by zero; keep the base away from 0.")
        out = Value(self.data ** exponent, _parents=(self,), _op=f"**{exponent:g}")

        def _backward() -> None:  # d(a^k)/da = k a^(k - 1)
            self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self) -> Value:
        """``e ** self``."""
        try:
            result = math.exp(self.data)
        except OverflowError:
            raise ValueError(f"exp({self.data}) overflows a float (the limit is about exp(709.78)); "
                             "scale the input down or use a stable formula.") from None
        out = Value(result, _parents=(self,), _op="exp")

        def _backward() -> None:  # d(e^a)/da = e^a, the output itself
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        """Natural logarithm; the input must be positive."""
        if self.data <= 0:
            raise ValueError(f"log is defined for positive numbers only, got {self.data}; "
                             "shift the input, e.g. (x * x + 1).log().")
        out = Value(math.log(self.data), _parents=(self,), _op="log")

        def _backward() -> None:  # d(log a)/da = 1 / a
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        """Hyperbolic tangent."""
        out = Value(math.tanh(self.data), _parents=(self,), _op="tanh")

        def _backward() -> None:  # d(tanh a)/da = 1 - tanh(a)^2
            self.grad += (1.0 - out.data ** 2) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        """``max(0, self)``; its derivative is taken as 0 at 0, as in PyTorch."""
        out = Value(max(0.0, self.data), _parents=(self,), _op="relu")

        def _backward() -> None:  # 1 where the input is positive, else 0
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    # -- everything else is built from the primitives ----------------------------------------

    def __neg__(self) -> Value:
        return self * -1

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-_as_value(other))

    def __truediv__(self, other: Value | Number) -> Value:
        return self * _as_value(other) ** -1

    def __radd__(self, other: Number) -> Value:  # 2 + v
        return self + other

    def __rmul__(self, other: Number) -> Value:  # 2 * v
        return self * other

    def __rsub__(self, other: Number) -> Value:  # 2 - v
        return _as_value(other) - self

    def __rtruediv__(self, other: Number) -> Value:  # 2 / v
        return _as_value(other) / self

    # -- the backward pass ---------------------------------------------------------------------

    def backward(self) -> None:
        """Compute d(self)/d(node) for every node of the graph that produced ``self``.

        The nodes are put in topological order (every node after its parents), then visited in
        reverse: by the time a node passes its gradient on, every node that uses it has already
        added its contribution. Intermediate nodes start from 0 on every call; leaves accumulate.
        """
        order = topological_order(self)
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0  # d(self)/d(self)
        for node in reversed(order):
            node._backward()


def _pass_nothing_back() -> None:  # a leaf has no inputs
    pass


def _as_value(x: Value | Number) -> Value:
    return x if isinstance(x, Value) else Value(x)


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each once, parents before children; ``root`` is last.

    A depth-first search that appends a node once all its parents are appended. It uses an
    explicit stack, so long chains (a sum over thousands of terms) do not hit Python's recursion
    limit.
    """
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))  # comes back to it after its parents
        for parent in node._parents:
            if id(parent) not in visited:
                stack.append((parent, False))
    return order


# -- a tiny MLP made of Values ---------------------------------------------------------------------


class Neuron:
    """One unit: ``activation(w . x + b)`` with ``n_inputs`` weights.

    Weights and bias start uniform in ``(-1/sqrt(n_inputs), 1/sqrt(n_inputs))``, like
    ``torch.nn.Linear``.

    Args:
        n_inputs: number of inputs.
        activation: ``"tanh"``, ``"relu"`` or ``"linear"``.
        rng: random generator for the initial weights.
    """

    def __init__(self, n_inputs: int, activation: str = "tanh", *, rng: random.Random) -> None:
        if activation not in ("tanh", "relu", "linear"):
            raise ValueError(f"unknown activation {activation!r}; use 'tanh', 'relu' or 'linear'.")
        bound = 1.0 / math.sqrt(n_inputs)
        self.weights = [Value(rng.uniform(-bound, bound)) for _ in range(n_inputs)]
        self.bias = Value(rng.uniform(-bound, bound))
        self.activation = activation

    def __call__(self, x: Sequence[Value | Number]) -> Value:
        if len(x) != len(self.weights):
            raise ValueError(f"the neuron has {len(self.weights)} weights but got {len(x)} inputs.")
        total = self.bias
        for weight, xi in zip(self.weights, x):
            total = total + weight * xi
        if self.activation == "tanh":
            return total.tanh()
        if self.activation == "relu":
            return total.relu()
        return total

    def parameters(self) -> list[Value]:
        return self.weights + [self.bias]


class Layer:
    """``n_outputs`` neurons reading the same ``n_inputs`` inputs."""

    def __init__(self, n_inputs: int, n_outputs: int, activation: str = "tanh", *,
                 rng: random.Random) -> None:
        self.neurons = [Neuron(n_inputs, activation, rng=rng) for _ in range(n_outputs)]

    def __call__(self, x: Sequence[Value | Number]) -> list[Value]:
        return [neuron(x) for neuron in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for neuron in self.neurons for p in neuron.parameters()]


class ValueMLP:
    """A multilayer perceptron of :class:`Value` scalars: non-linear hidden layers, linear outputs.

    Args:
        sizes: layer widths from input to output, e.g. ``(16, 8, 1)``.
        seed: seed of the initial weights.
        activation: the hidden units' non-linearity, ``"tanh"`` or ``"relu"``.
    """

    def __init__(self, sizes: Sequence[int], seed: int = 0, activation: str = "tanh") -> None:
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {sizes}.")
        rng = random.Random(seed)
        self.sizes = tuple(sizes)
        last = len(sizes) - 2
        self.layers = [Layer(n_in, n_out, "linear" if i == last else activation, rng=rng)
                       for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def __call__(self, x: Sequence[Value | Number]) -> list[Value]:
        """Map ``sizes[0]`` inputs to ``sizes[-1]`` output Values."""
        x = [_as_value(xi) for xi in x]  # one constant node per input, not one per weight
        for layer in self.layers:
            x = layer(x)
        return list(x)

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0

    def state_dict(self) -> dict[str, list[Any]]:
        """Weights as nested lists, keyed like ``nn.Sequential(Linear, Tanh, ..., Linear)``.

        ``{k: torch.tensor(v) for k, v in mlp.state_dict().items()}`` loads into that module.
        """
        state: dict[str, list[Any]] = {}
        for i, layer in enumerate(self.layers):
            state[f"{2 * i}.weight"] = [[w.data for w in n.weights] for n in layer.neurons]  # (out, in)
            state[f"{2 * i}.bias"] = [n.bias.data for n in layer.neurons]  # (out,)
        return state


def logistic_loss(logit: Value, target: int) -> Value:
    """Binary cross-entropy of ``sigmoid(logit)`` against a 0/1 target: ``log(1 + exp(-y z))``.

    With ``y = 2 target - 1`` and ``m = y z``, it is computed as ``log(1 + exp(-m))`` for
    ``m >= 0`` and ``-m + log(1 + exp(m))`` otherwise, so ``exp`` never overflows. Which formula
    runs depends on the data: the graph is recorded as the program runs.
    """
    if target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target!r}.")
    margin = logit * (2 * target - 1)
    if margin.data >= 0:
        return (1 + (-margin).exp()).log()
    return -margin + (1 + margin.exp()).log()


# -- random expressions, for checking gradients against torch.autograd ----------------------------

# Each operation: (arity, how to compute it, how to print it). ``{A}``/``{B}`` are operands put in
# parentheses when needed. Every operation keeps its input in its domain: log and fractional
# powers act on u^2 + 1 > 0, exp on tanh(u), division is by u^2 + 1.
_OPERATIONS: dict[str, tuple[int, Callable[..., Any], str]] = {
    "exp": (1, lambda a: a.tanh().exp(), "exp(tanh({a}))"),
    "log": (1, lambda a: (a * a + 1).log(), "log({A}^2 + 1)"),
    "tanh": (1, lambda a: a.tanh(), "tanh({a})"),
    "relu": (1, lambda a: a.relu(), "relu({a})"),
    "square": (1, lambda a: a ** 2, "{A}^2"),
    "sqrt": (1, lambda a: (a * a + 1) ** 0.5, "({A}^2 + 1)^0.5"),
    "power": (1, lambda a: (a * a + 1) ** -1.5, "({A}^2 + 1)^-1.5"),
    "neg": (1, lambda a: -a, "-{A}"),
    "add": (2, lambda a, b: a + b, "{a} + {b}"),
    "sub": (2, lambda a, b: a - b, "{a} - {B}"),
    "mul": (2, lambda a, b: a * b, "{A}*{B}"),
    "div": (2, lambda a, b: a / (b * b + 1), "{A}/({B}^2 + 1)"),
    "radd": (2, lambda a, b: 2.5 + a + b, "2.5 + {a} + {b}"),
    "rmul": (2, lambda a, b: 0.5 * a - 3 / (b * b + 1), "0.5*{A} - 3/({B}^2 + 1)"),
}


def random_expression(num_leaves: int, depth: int, seed: int) -> tuple:
    """A random expression tree over leaves ``x0 .. x{num_leaves-1}``, as nested tuples.

    A node is ``("leaf", i)``, ``(operation, child)`` or ``(operation, left, right)``, with the
    operations of ``_OPERATIONS``. Leaves are drawn with replacement, so a leaf is often used
    several times. Every operation keeps its input in its domain, so the tree is valid for any
    real leaves. Evaluate it with :func:`evaluate_expression`, print it with
    :func:`format_expression`.
    """
    if num_leaves < 1 or depth < 1:
        raise ValueError(f"need num_leaves >= 1 and depth >= 1, got {num_leaves} and {depth}.")
    rng = random.Random(seed)
    names = sorted(_OPERATIONS)

    def build(level: int) -> tuple:
        if level == 0 or (level < depth and rng.random() < 0.2):  # the root is never a leaf
            return ("leaf", rng.randrange(num_leaves))
        name = rng.choice(names)
        return (name, *(build(level - 1) for _ in range(_OPERATIONS[name][0])))

    return build(depth)


def evaluate_expression(tree: tuple, leaves: Sequence[Any]) -> Any:
    """Evaluate a :func:`random_expression` tree on Values, floats or torch tensors alike."""
    if tree[0] == "leaf":
        return leaves[tree[1]]
    return _OPERATIONS[tree[0]][1](*(evaluate_expression(child, leaves) for child in tree[1:]))


def format_expression(tree: tuple) -> str:
    """The tree as a formula, e.g. ``tanh(x0*x1) + log(x2^2 + 1)``."""
    if tree[0] == "leaf":
        return f"x{tree[1]}"
    operands = [format_expression(child) for child in tree[1:]]
    fields = {"a": operands[0], "A": _parenthesize(operands[0])}
    if len(operands) == 2:
        fields.update(b=operands[1], B=_parenthesize(operands[1]))
    return _OPERATIONS[tree[0]][2].format(**fields)


def _parenthesize(formula: str) -> str:
    """``formula`` in parentheses, unless it is a leaf, ``(...)`` or a call ``name(...)``."""
    opening = formula.find("(")
    head = formula[:opening]
    if formula.isalnum() or (opening >= 0 and (head == "" or head.isalpha())
                             and _matching(formula, opening) == len(formula) - 1):
        return formula
    return f"({formula})"


def _matching(formula: str, opening: int) -> int:
    depth = 0
    for i in range(opening, len(formula)):
        depth += {"(": 1, ")": -1}.get(formula[i], 0)
        if depth == 0:
            return i
    return -1


# -- drawing a small graph ---------------------------------------------------------------------


def draw_graph(root: Value, ax: Any = None, names: dict[int, str] | None = None) -> Any:
    """Draw the computational graph of ``root`` with matplotlib, inputs on the left.

    Each box shows a node's operation (or label), its data and its grad. Meant for graphs of a
    dozen nodes or so.

    Args:
        root: the output node.
        ax: a matplotlib Axes to draw on (a new figure is made when None).
        names: optional ``{id(node): name}`` overriding the labels.

    Returns:
        The Axes.
    """
    import matplotlib.pyplot as plt  # only when drawing

    order = topological_order(root)
    column: dict[int, int] = {}
    for node in order:  # parents come first, so their columns are known
        column[id(node)] = 1 + max((column[id(p)] for p in node._parents), default=-1)
    rows: dict[int, int] = {}
    position: dict[int, tuple[float, float]] = {}
    for node in order:
        c = column[id(node)]
        rows[c] = rows.get(c, 0) + 1
        position[id(node)] = (c, -rows[c])
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * (max(column.values()) + 1), 1.2 * max(rows.values())))
    for node in order:
        x, y = position[id(node)]
        for parent in node._parents:
            px, py = position[id(parent)]
            bend = 0.25 if x - px > 1 and y == py else 0.0  # arc over the boxes a long edge skips
            ax.annotate("", xy=(x - 0.33, y), xytext=(px + 0.33, py),
                        arrowprops={"arrowstyle": "->", "color": "#777777",
                                    "connectionstyle": f"arc3,rad={-bend}"})
        name = (names or {}).get(id(node)) or node.label or node._op
        ax.text(x, y, f"{name}\ndata {node.data:.3f}\ngrad {node.grad:.3f}", ha="center",
                va="center", fontsize=8, bbox={"boxstyle": "round", "facecolor": "#eef3fa",
                                                "edgecolor": "#1f77b4"})
    ax.set_xlim(-0.6, max(column.values()) + 0.6)
    ax.set_ylim(-max(rows.values()) - 0.6, -0.2)
    ax.axis("off")
    return ax
