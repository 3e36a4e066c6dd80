"""Profiles shipped with the package, as JSON files beside this module."""
