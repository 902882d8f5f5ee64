"""TorchServe handlers: thin adapters over the library. Installed as ``afdserve.handlers`` (see
setup.py) so ``afdserve build`` finds them outside a clone too; each file is copied into its
archive and imported there by TorchServe under its own name."""
