"""Infrastructure the services use: the media store, the cipher, log redaction, pagination."""
