"""One SQL code path for the SQL stores (SQLite, PostgreSQL).

A store operation is written once, in :mod:`.tasks`, :mod:`.runs` and :mod:`.dead_letters`, as a
generator of :mod:`.steps` (run this statement, give me its rows); each store drives it on its
own connection: the SQLite store synchronously in its worker thread, the PostgreSQL store with
``await`` on an asyncpg connection. A :class:`~.steps.Dialect` supplies the statements' text.
"""
