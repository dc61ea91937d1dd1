"""Emulators: the product's offline world."""
