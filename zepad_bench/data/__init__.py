"""Data containers, transforms and seeded splits."""
