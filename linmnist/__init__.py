"""linmnist: a linear MNIST classifier trained by minibatch SGD, studied reproducibly."""

__version__ = "0.1.0"
