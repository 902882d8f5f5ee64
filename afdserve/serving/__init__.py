"""The runtime an archive ships, without TorchServe: the settings an archive carries
(``settings``), request envelopes and errors (``requests``), the service contract (``service``)
and the two services, tiled restoration, the worker process set-up and the loop the TorchServe
handlers share (``handler``). May import ``afdserve.imaging`` and ``afdserve.models`` only."""
