"""Persistence: SQLAlchemy models, Alembic migrations, the repository used by the app."""
