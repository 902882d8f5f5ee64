"""TorchServe handler for the classifier archives (``afd_classifier``, ``lite0_baseline`` and
``restore_classify``).

A thin adapter: TorchServe's initialize/handle calls are mapped onto
``afdserve.serving.classifier_service.ClassifierService``, which the archive carries, by the
handler loop both handlers share (``afdserve.serving.handler``).
"""

from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.handler import ServiceHandler


class AFDClassifierHandler(ServiceHandler):
    service_class = ClassifierService
