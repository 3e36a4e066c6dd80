"""Backends execute what the worker runtime decided to run: real (torch) or emulated."""
