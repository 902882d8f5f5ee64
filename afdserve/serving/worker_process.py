"""Process-wide settings of a serving worker, applied once before its model loads. The bench and
the measuring scripts apply them too, so what they time is what a worker runs."""

import logging

from afdserve.serving.allocator import keep_freed_memory

log = logging.getLogger(__name__)


def single_threaded_blas() -> bool:
    """Run numpy's BLAS on the calling thread only. numpy's products in preprocessing (the pooled
    DCT's, ~0.2 ms each) are big enough for OpenBLAS to wake its thread pool, whose spin-waits
    then doubled the stage's CPU time; the model's threads are torch's, which this leaves alone.
    Returns whether a BLAS library was found and limited."""
    import numpy  # noqa: F401  (threadpoolctl limits only libraries already loaded)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up: preprocessing is correct either way
        log.warning("threadpoolctl is missing: numpy's BLAS keeps its own thread pool")
        return False
    # Not used as a context manager: the limit stays for the life of the process.
    limits = threadpool_limits(limits=1, user_api="blas")
    return limits.get_original_num_threads().get("blas") is not None


def prepare_worker_process() -> None:
    """Everything a worker (or a measurement of one) sets for its whole process."""
    keep_freed_memory()
    single_threaded_blas()
