"""The operator bot (aiogram 3): routers per feature, keyboards, middlewares."""
