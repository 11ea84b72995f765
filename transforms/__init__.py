"""LHEO reading, validation and mapping to the KAIROS session model."""
