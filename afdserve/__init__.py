"""afdserve: serve image classifiers on JPEG-compressed images through TorchServe.

The library (decoding, DCT, models, archive building, client) works without a running server;
the files in ``handlers/`` are thin TorchServe adapters over it.
"""

__version__ = "0.1.0"
