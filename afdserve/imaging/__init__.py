"""Turning request bytes into model inputs: decoding, block DCT, preprocessing."""
