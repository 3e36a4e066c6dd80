"""Virtual-time cluster simulator: the real scheduler object, simulated workers, a seeded heap."""
