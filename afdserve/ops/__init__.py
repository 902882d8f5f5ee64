"""Operating a TorchServe: starting and stopping a local one (``server``), its management API
(``management``), the inference client with the A/B traffic split (``client``), the key file
(``keys``) and latency percentiles (``latency``). No torch: these run beside a server, on
machines that need not hold the models. May import ``afdserve.packaging.manifest``,
``afdserve.evaluation.gate`` and ``afdserve.util``."""
