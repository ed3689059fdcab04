"""Part 1, foundations: the perceptron, backpropagation written by hand, and the MLP.

``from companion.foundations import train_perceptron`` imports torch; ``import companion`` alone
does not.
"""

from companion.foundations.backprop import TwoLayerMLP, binary_cross_entropy_with_logits, gradient_descent
from companion.foundations.mlp import MLP, mlp
from companion.foundations.perceptron import Perceptron, train_perceptron, truth_table

__all__ = ["MLP", "Perceptron", "TwoLayerMLP", "binary_cross_entropy_with_logits", "gradient_descent",
           "mlp", "train_perceptron", "truth_table"]
