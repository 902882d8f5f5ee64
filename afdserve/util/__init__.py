"""Small helpers every tool-side package shares: files written atomically, executables found
beside this interpreter. Imports nothing of afdserve and no torch; the runtime does not use it."""
