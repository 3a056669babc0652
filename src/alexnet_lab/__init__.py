"""AlexNet Lab: the paper's network, its ablations, and the machinery to run them."""

from alexnet_lab import resolvers as _resolvers  # noqa: F401  (config resolvers)

__version__ = "0.1.0"
