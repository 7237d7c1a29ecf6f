"""The audience: users, apps and devices, subscriptions, segments and time zones, stored in PostgreSQL.

Nothing here imports psycopg2 at import time: ``core/audience/connection.py`` loads it when the first connection is
made, so a function that never reaches the database does not pay for it at cold start.
"""
