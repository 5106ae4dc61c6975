"""Preference Studio: label pairwise preferences and fine-tune local models on them."""

__version__ = "0.1.0"
