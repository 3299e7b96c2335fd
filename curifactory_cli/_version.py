"""The package's version, in a module of its own: the modules inside the package read it from
here, never from the package itself (whose lazy names would make every import a circle)."""

__version__ = "0.1.0"
