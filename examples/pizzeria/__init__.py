"""Mario's pizzeria (seed 003) as a small application: a FastAPI web process that schedules
and a worker process that runs, sharing one store.

Run both with ``python -m examples.pizzeria`` (see ``examples/pizzeria/README.md``).
"""
