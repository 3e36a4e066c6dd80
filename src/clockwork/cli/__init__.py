"""Command line: the only place that reads argv, the environment and config files."""
