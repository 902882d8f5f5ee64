"""TorchServe handler for the restorer archives (``swinir_restorer``).

A thin adapter: TorchServe's initialize/handle calls are mapped onto
``afdserve.serving.restorer_service.RestorerService``, which the archive carries, by the handler
loop both handlers share (``afdserve.serving.handler``). Answers are image bytes (PNG, or JPEG on
request) or a JSON error for that request alone.
"""

from afdserve.serving.handler import ServiceHandler
from afdserve.serving.restorer_service import RestorerService


class SwinIRRestorerHandler(ServiceHandler):
    service_class = RestorerService
