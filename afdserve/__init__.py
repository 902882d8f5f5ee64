"""afdserve: serve image classifiers on JPEG-compressed images through TorchServe.

Packages by role, each importing only those below it (tests/test_layout.py checks it): the
runtime an archive ships (``imaging``, ``models``, ``serving``, ``handlers``), then ``data``,
``util``, ``packaging``, ``evaluation``, ``ops``, ``train`` and ``experiments``; ``cli`` imports a
command's module only when it runs.
"""

__version__ = "0.1.0"
