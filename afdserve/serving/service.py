"""The contract every service keeps, and the one loop that runs it over a batch.

A service answers a batch of requests in four stages, each named once here:

  decode   one request alone: its bytes (and headers) to a model input; a bad request is refused
           with its own 4xx and the others go on
  batch    the decoded inputs of the batch to what the network takes at once
  predict  the network, once per batch
  encode   one request's output to its ``Reply``

``Service.handle`` runs them; the TorchServe handlers (``afdserve.serving.handler``), the
evaluation and the benchmarks all call it, so what is served is what is measured.
"""

from __future__ import annotations

import logging

from afdserve.imaging.decode import ImageDecodeError
from afdserve.serving.requests import BadRequest, Reply

log = logging.getLogger(__name__)

STAGES = ("decode", "batch", "predict", "encode")


class Service:
    model_name: str
    version: str
    # What a request whose prediction failed is told (our bug, not the caller's).
    PREDICT_FAILED = "internal error while predicting"

    def decode(self, row, headers: dict):
        raise NotImplementedError

    def batch(self, items: list):
        raise NotImplementedError

    def predict(self, batch) -> list:
        raise NotImplementedError

    def encode(self, item, output) -> Reply:
        raise NotImplementedError

    def decode_all(self, rows: list, headers: list[dict]) -> list:
        """Each row's decoded input, or the Reply that refuses it; one after the other."""
        return [self.decode_or_refuse(idx, row, headers[idx]) for idx, row in enumerate(rows)]

    def decode_or_refuse(self, idx: int, row, headers: dict):
        try:
            return self.decode(row, headers)
        except (BadRequest, ImageDecodeError) as err:
            return Reply.error(err.status, str(err))
        except Exception:  # our bug, not the caller's: fail this request alone
            log.exception("preparing request %d failed", idx)
            return Reply.error(500, "internal error while preparing the image")

    def handle(self, rows: list, headers: list[dict] | None = None) -> list[Reply]:
        """Answer every request of a batch; a bad one gets its own 4xx, the others 200."""
        headers = headers or [{}] * len(rows)
        replies = self.decode_all(rows, headers)
        good = [(idx, item) for idx, item in enumerate(replies) if not isinstance(item, Reply)]
        if good:
            outputs = self._predict_isolating_failures([item for _, item in good])
            for (idx, item), output in zip(good, outputs):
                replies[idx] = Reply.error(500, self.PREDICT_FAILED) if output is None else self.encode(item, output)
        return replies

    def _predict_isolating_failures(self, items: list) -> list:
        try:
            return list(self.predict(self.batch(items)))
        except Exception:
            # Our bug, not the callers': find the request it belongs to, fail it alone.
            log.exception("predicting a batch of %d failed; retrying one by one", len(items))
        outputs = []
        for item in items:
            try:
                outputs.extend(self.predict(self.batch([item])))
            except Exception:
                log.exception("predicting one request failed")
                outputs.append(None)
        return outputs
