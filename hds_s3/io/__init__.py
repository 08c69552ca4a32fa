"""Reaching data from outside the library: source bytes, the ``hds://`` filesystem, training loaders."""
