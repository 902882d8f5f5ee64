"""Training: the AFD module (``afd``) and the compact SwinIR restorer (``restorer``, with its
task-aware fine-tuning through the frozen classifier in ``task_restorer``) recipes, on one loop
(``loop``). May import ``afdserve.data``, ``afdserve.imaging``, ``afdserve.models``,
``afdserve.serving`` (tiled restoration), ``afdserve.evaluation`` (the metrics of the final check)
and ``afdserve.util``."""
