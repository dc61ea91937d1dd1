"""Use cases of the CRM: access_* reads with a permission check, do_* writes that emit events."""
