"""The worker: does exactly what it is told, when it is told (DESIGN.md s.4)."""
