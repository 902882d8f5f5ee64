"""Archives and the model store: the releases and how each is built into a .mar (``archive``),
their manifests, and the store's record of default and retired versions (``manifest``). May
import ``afdserve.models``, ``afdserve.serving`` (the settings an archive carries) and
``afdserve.util``. ``manifest`` imports no torch: the ops commands use it."""
