"""Database: engine and sessions, models, Alembic migrations."""
