"""TorchServe handler for the classifier archives (``afd_classifier``, ``lite0_baseline``,
``restore_classify``, the Lite1/Lite2 ones and a user's own: each archive's settings name its
backbone).

A thin adapter: TorchServe's initialize/handle calls are mapped onto
``afdserve.serving.classifier_service.ClassifierService``, which the archive carries, by the
handler loop both handlers share (``afdserve.serving.handler``).
"""

from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.handler import ServiceHandler


class AFDClassifierHandler(ServiceHandler):
    service_class = ClassifierService
