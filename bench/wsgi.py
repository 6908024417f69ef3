"""``gunicorn wsgi:application`` (run from bench/): the system named by ``BENCH_SYSTEM`` on
the database ``BENCH_DB``."""

import os

from driver import build

application, _path = build(os.environ["BENCH_SYSTEM"], os.environ["BENCH_DB"])
