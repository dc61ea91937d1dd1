"""The ``/sandbox`` page: a template and static files, served by ``routes``."""

from sandbox.page.routes import SECURITY_HEADERS, from_this_machine, is_control_path, router

__all__ = ["SECURITY_HEADERS", "from_this_machine", "is_control_path", "router"]
