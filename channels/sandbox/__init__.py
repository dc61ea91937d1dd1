"""Local emulators of the messenger APIs the product uses (DESIGN section 6)."""
