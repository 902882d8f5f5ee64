"""Judging models: accuracy of archives through the serving path (``accuracy``) and of trained
AFD runs (``afd_report``), PSNR/SSIM/PSNR-B and the restorer's report (``restoration_metrics``,
``restorer_report``), the paired A/B statistics (``ab_stats``) and the promotion gate (``gate``,
pure Python). May import ``afdserve.data``, ``afdserve.imaging``, ``afdserve.models`` and
``afdserve.serving``."""
