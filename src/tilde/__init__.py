"""Tilde client (0.7.2-compatible surface); the public face is completed in this module."""

__version__ = "0.7.2"
