"""What the tests share: running the tools as a user would, the guide's SQL, and the extra
servers some tests need (a password-protected PostgreSQL, PgBouncer)."""
