"""TorchServe handler for the restorer archives (``swinir_restorer``).

A thin adapter: TorchServe's initialize/handle calls are mapped onto
``afdserve.serving.restorer_service.RestorerService``, which the archive carries. Answers are
image bytes (PNG, or JPEG on request) or a JSON error for that request alone.
"""

import logging
from http import HTTPStatus

from afdserve.serving.restorer_service import RestorerService
from afdserve.serving.torchserve_context import emit_request_metrics, start_service

log = logging.getLogger(__name__)


def _request_headers(context, idx: int) -> dict:
    try:
        return dict(context.request_processor[idx].get_request_properties() or {})
    except (AttributeError, IndexError, TypeError):
        return {}


class SwinIRRestorerHandler:
    def __init__(self):
        self.service = None

    def initialize(self, context):
        self.service = start_service(RestorerService, context)

    def handle(self, data, context):
        headers = [_request_headers(context, idx) for idx in range(len(data))]
        replies = self.service.handle(data, headers)
        rejected = sum(r.status != 200 for r in replies)
        log.info("batch of %d requests: %d answered, %d rejected", len(replies), len(replies) - rejected, rejected)
        emit_request_metrics(context, self.service.model_name, self.service.version,
                             [(r.status, r.jpeg_quality) for r in replies])
        for idx, reply in enumerate(replies):
            context.set_response_content_type(idx, reply.content_type)
            if reply.status != 200:
                context.set_response_status(code=reply.status, phrase=HTTPStatus(reply.status).phrase, idx=idx)
        return [reply.body for reply in replies]
