"""Request and action records, summaries, reports and plots (DESIGN.md s.7)."""
