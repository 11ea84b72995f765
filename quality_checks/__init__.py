"""Data-quality rules over the loaded KAIROS model."""
