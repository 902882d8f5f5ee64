"""Turning request bytes into model inputs: decoding (with the pixel limits checked before any
pixel is decoded, the JPEG quality estimate, EXIF orientation), the block DCT, preprocessing, and
the same on the model's device. Runtime: shipped inside every archive. Imports nothing of
afdserve outside this package."""
