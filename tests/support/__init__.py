"""Helpers shared by the test modules; test modules and conftest files import only from here."""
