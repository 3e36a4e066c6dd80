"""Arrival generators and trace replay (DESIGN.md s.6)."""
