"""The package's version, in a module of its own so that modules inside the package read it
without importing the package's API (``search/__init__.py`` re-exports it)."""

__version__ = "0.1.0"
