"""The single place where pyliftbridge's version is defined."""

__version__ = "0.1.0"
