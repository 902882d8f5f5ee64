"""Training: the AFD module (``afd``) and the compact SwinIR restorer (``restorer``) recipes.
May import ``afdserve.data``, ``afdserve.imaging``, ``afdserve.models``, ``afdserve.serving``
(tiled restoration), ``afdserve.evaluation`` (the metrics of the final check) and
``afdserve.util``."""
