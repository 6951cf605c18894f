"""Stack lifecycle: PostgreSQL and Redis, configured or embedded."""
