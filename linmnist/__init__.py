"""linmnist: a linear MNIST classifier trained by minibatch SGD, studied reproducibly."""

import os

# numpy advises the kernel to back large arrays with huge pages. Where transparent huge
# pages are "madvise" with synchronous defragmentation, each process's first large arrays
# then cost seconds of kernel time (measured: 3.4 s to fill 376 MB, 0.2 s without the
# advice), and a build starts dozens of processes. The advice is off in every process this
# package starts (job workers, notebook kernels) and in this one if numpy comes after it;
# NUMPY_MADVISE_HUGEPAGE=1 in the environment keeps it.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

__version__ = "0.1.0"
