"""What the tests share: fixtures' helpers, a throwaway PostgreSQL server, the queue tests'
app, worker and processes, the admin's browser set-up, and the scripts the concurrency and
load tests run as separate processes (``python -m support.NAME`` from ``tests/``).

Reached through pytest's ``pythonpath`` setting (``tests/``): ``from support.helpers import
make_app``.
"""
