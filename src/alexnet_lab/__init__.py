"""AlexNet Lab: the paper's network, its ablations, and the machinery to run them."""

__version__ = "0.1.0"
