"""``python -m examples.worker_monitoring {run,add,terminate,status,demo}``."""

from examples.worker_monitoring.cli import main

main()
