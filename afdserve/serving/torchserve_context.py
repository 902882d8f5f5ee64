"""What both handlers read from TorchServe's context: where the archive was unpacked, its
``afdserve`` settings, the model's name and version, and the device the worker was given."""

import torch


def worker_device(context) -> torch.device:
    """The GPU TorchServe assigned to this worker, or the CPU when there is none."""
    gpu_id = context.system_properties.get("gpu_id")
    if torch.cuda.is_available() and gpu_id is not None:
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


def archive_identity(context) -> dict:
    """Keyword arguments of the services' ``from_model_dir``: model_dir, settings, model_name,
    version."""
    model = context.manifest["model"]
    return {
        "model_dir": context.system_properties["model_dir"],
        "settings": (context.model_yaml_config or {}).get("afdserve", {}),
        "model_name": model["modelName"],
        "version": model.get("modelVersion", ""),
    }
