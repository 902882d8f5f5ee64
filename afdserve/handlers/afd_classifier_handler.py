"""TorchServe handler for the classifier archives (``afd_classifier``, ``lite0_baseline`` and
``restore_classify``).

A thin adapter: TorchServe's initialize/handle calls are mapped onto
``afdserve.serving.classifier_service.ClassifierService``, which the archive carries.
"""

import logging
from http import HTTPStatus

from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.torchserve_context import emit_request_metrics, start_service

log = logging.getLogger(__name__)


class AFDClassifierHandler:
    def __init__(self):
        self.service = None

    def initialize(self, context):
        self.service = start_service(ClassifierService, context)

    def handle(self, data, context):
        answers = self.service.handle(data)
        rejected = sum(a.status != 200 for a in answers)
        # One line per batch: how operators (and the end-to-end tests) see batching at work.
        log.info("batch of %d requests: %d answered, %d rejected", len(answers), len(answers) - rejected, rejected)
        emit_request_metrics(context, self.service.model_name, self.service.version,
                             [(a.status, a.body.get("jpeg_quality")) for a in answers])
        for idx, answer in enumerate(answers):
            context.set_response_content_type(idx, "application/json")
            if answer.status != 200:
                # The reason phrase is the standard one (the JSON body says what was wrong), and
                # keyword arguments because the positional order is (code, phrase, idx).
                context.set_response_status(code=answer.status, phrase=HTTPStatus(answer.status).phrase, idx=idx)
        return [answer.json() for answer in answers]
