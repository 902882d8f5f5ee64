"""The one TorchServe handler loop, which both handler classes in ``afdserve.handlers`` use: start
the archive's service on the worker (``initialize``), then for each batch hand TorchServe's rows
and headers to the service, log and count the outcome, and set each answer's status and type."""

import logging
from http import HTTPStatus

from afdserve.serving.torchserve_context import emit_request_metrics, request_headers, start_service

log = logging.getLogger(__name__)


class ServiceHandler:
    """Subclasses name their service class (``ClassifierService``, ``RestorerService``)."""

    service_class = None

    def __init__(self):
        self.service = None

    def initialize(self, context):
        self.service = start_service(self.service_class, context)

    def handle(self, data, context):
        headers = [request_headers(context, idx) for idx in range(len(data))]
        replies = self.service.handle(data, headers)
        rejected = sum(r.status != 200 for r in replies)
        # One line per batch: how operators (and the end-to-end tests) see batching at work.
        log.info("batch of %d requests: %d answered, %d rejected", len(replies), len(replies) - rejected, rejected)
        emit_request_metrics(context, self.service.model_name, self.service.version,
                             [(r.status, r.jpeg_quality) for r in replies])
        for idx, reply in enumerate(replies):
            context.set_response_content_type(idx, reply.content_type)
            if reply.status != 200:
                # The reason phrase is the standard one (the JSON body says what was wrong), and
                # keyword arguments because the positional order is (code, phrase, idx).
                context.set_response_status(code=reply.status, phrase=HTTPStatus(reply.status).phrase, idx=idx)
        return [reply.wire() for reply in replies]
