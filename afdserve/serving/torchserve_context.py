"""What both handlers read from TorchServe's context (where the archive was unpacked, its
``afdserve`` settings, the model's name and version, the device the worker was given) and how
they start a worker on it (``start_service``)."""

import logging

import torch

from afdserve.serving.settings import ArchiveSettings
from afdserve.serving.worker_process import prepare_worker_process

log = logging.getLogger(__name__)


def worker_device(context) -> torch.device:
    """The GPU TorchServe assigned to this worker, or the CPU when there is none."""
    gpu_id = context.system_properties.get("gpu_id")
    if torch.cuda.is_available() and gpu_id is not None:
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def apply_worker_threads(settings: ArchiveSettings | dict) -> int:
    """Set this worker's torch intra-op threads from the archive's ``threads`` setting (none:
    torch's default, one per core); returns the count in force. Threads are per process, and
    TorchServe runs one process per worker, so workers x threads is what shares the cores."""
    threads = ArchiveSettings.coerce(settings).threads
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def request_headers(context, idx: int) -> dict:
    """The headers of request ``idx`` of the batch (none when TorchServe does not say)."""
    try:
        return dict(context.request_processor[idx].get_request_properties() or {})
    except (AttributeError, IndexError, TypeError):
        return {}


def start_service(service_class, context):
    """What both handlers' ``initialize`` does: set up this worker process (allocator, BLAS and
    torch threads) and load the archive's service on the worker's device."""
    prepare_worker_process()
    device = worker_device(context)
    identity = archive_identity(context)
    threads = apply_worker_threads(identity["settings"])
    service = service_class.from_model_dir(**identity, device=device)
    log.info("%s %s ready on %s with %d torch threads", service.model_name, service.version, device, threads)
    return service


def archive_identity(context) -> dict:
    """Keyword arguments of the services' ``from_model_dir``: model_dir, settings, model_name,
    version."""
    model = context.manifest["model"]
    return {
        "model_dir": context.system_properties["model_dir"],
        "settings": ArchiveSettings.from_dict((context.model_yaml_config or {}).get("afdserve")),
        "model_name": model["modelName"],
        "version": model.get("modelVersion", ""),
    }


# Bands of the IJG quality estimated from each request's file: where the AFD module's correction
# matters (<= 10 is heavy compression), and "not-jpeg" for PNG/WebP.
QUALITY_BANDS = ((10, "1-10"), (30, "11-30"), (60, "31-60"), (90, "61-90"), (100, "91-100"))


def quality_band(quality: int | None) -> str:
    if quality is None:
        return "not-jpeg"
    return next(label for top, label in QUALITY_BANDS if quality <= top)


def emit_request_metrics(context, model_name: str, version: str, outcomes) -> None:
    """The handler's own per-version counters, from (status, jpeg_quality) per request:
    ``RequestsByQualityBand`` for answered requests and ``RejectedInputs`` by status code, both
    with ModelName and ModelVersion (TorchServe's own request counters have no per-version error
    count). They reach Prometheus with ``model_metrics_auto_detect=true``. Never fails a batch."""
    metrics = getattr(context, "metrics", None)
    if metrics is None:
        return
    try:
        from ts.metrics.dimension import Dimension

        for status, quality in outcomes:
            dims = [Dimension("ModelName", model_name), Dimension("ModelVersion", version)]
            if status == 200:
                metrics.add_counter("RequestsByQualityBand", 1, None,
                                    dims + [Dimension("QualityBand", quality_band(quality)), Dimension("Level", "Model")])
            else:
                metrics.add_counter("RejectedInputs", 1, None,
                                    dims + [Dimension("Status", str(status)), Dimension("Level", "Model")])
    except Exception:  # metrics are worth less than the answers
        log.exception("emitting request metrics failed")
