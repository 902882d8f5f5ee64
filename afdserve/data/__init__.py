"""Data for training and evaluation: labelled image folders, JPEG re-encoding as users' files are
made, lists of JPEG qualities from the command line, and the fixed train/validation split.

May import ``afdserve.imaging`` (the serving decoder reads back what was encoded) and nothing else
of afdserve; no torch. The runtime never imports this package: an archive carries only the
``index_to_name.json`` that lives here, copied to its root.
"""
