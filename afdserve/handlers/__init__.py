"""TorchServe handlers: thin adapters over ``afdserve.serving``, one class each. Each file is
copied into its archive (under the same name: archives built earlier name these files) and
imported there by TorchServe under its own name. May import ``afdserve.serving`` only."""
