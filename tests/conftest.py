"""Shared fixtures: small MNIST-like synthetic data, real MNIST for integration tests, the
repository's own small build, and a local HTTP server in place of a download host."""

import fcntl
import gc
import http.server
import threading

import numpy as np
import pytest


def mnist_like(n: int, n_test: int = 0, *, d: int = 784, seed: int = 0):
    """Sparse non-negative images of 10 noisy prototypes, scaled like pixels / 255."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((10, d)) < 0.3) * rng.integers(150, 256, (10, d))

    def make(m):
        y = rng.integers(0, 10, m)
        x = protos[y] * (rng.random((m, d)) < 0.8)
        x = x + (rng.random((m, d)) < 0.05) * rng.integers(0, 256, (m, d))
        X = (np.clip(x, 0, 255).T / 255).astype(np.float32)
        return X, np.eye(10, dtype=np.float32)[y].T.copy()

    return make(n), make(n_test)


def pytest_collection_finish(session):
    """The modules imported and the tests collected live until the end: frozen out of the
    cyclic garbage collector, its full passes during the tests skip them (its time in a
    make test-fast worker: 1.65/1.92 -> 1.10/1.20 s)."""
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The session is over: the objects its tests left are frozen too, so that the collector's
    passes over them at the interpreter's exit do not keep each pytest-xdist worker alive for
    1-4 s after its last test (measured under load; make test-fast waits for both)."""
    gc.freeze()


@pytest.fixture(scope="session")
def synthetic():
    """``mnist_like`` itself, for tests that need synthetic data of another size."""
    return mnist_like


@pytest.fixture(scope="session")
def small_data():
    """((X, Y), (X_test, Y_test)) with 2,000 training and 500 test samples."""
    return mnist_like(2000, 500)


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST, prepared: ((X, Y), (X_test, Y_test)) in float32, feature-major."""
    from linmnist.engine.data import load_mnist, prepare

    (x, y), (xt, yt) = load_mnist()
    return prepare(x, y), prepare(xt, yt)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    """The repository's small build (``reports/mnist/small``), made or found up to date by
    ``python -m linmnist report``: one build that the report's tests read and that the
    pipeline and hostile-build tests copy instead of making their own. The pytest-xdist
    workers take turns through a lock in their shared temporary directory, so the second
    finds the build made."""
    from linmnist.cli import main
    from linmnist.experiments.paths import build_dir

    lock = tmp_path_factory.getbasetemp().parent / "small-build.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["report", "--profile", "small", "--jobs", "2", "--no-progress"]) == 0
    return build_dir("mnist", "small")


@pytest.fixture
def http_files():
    """A local HTTP server: ``(origin, serve, asked)``; ``serve[path] = bytes`` serves a file
    (any other path is a 404), ``asked`` lists the paths asked for."""
    serve, asked = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = serve.get(self.path)
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for the serving loop to look again: every 0.05 s, not the default 0.5 s
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", serve, asked
    server.shutdown()
    server.server_close()
