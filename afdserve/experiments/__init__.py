"""Experiments on a running server: ``afdserve ab`` (two versions on the same images), ``bench``
(where the serving time goes) and ``loadtest`` (bounded concurrent load, a worker killed). May
import ``afdserve.ops``, ``afdserve.evaluation``, ``afdserve.data``, ``afdserve.packaging``,
``afdserve.serving`` and ``afdserve.imaging``."""
