"""Clockwork: a predictable multi-tenant DNN model server (after Gujarati et al., OSDI 2020)."""

__version__ = "0.1.0"
