"""Worker monitoring (seed 000) as a small application: one ``WorkerMetricsCollectionJob`` per
cloud worker, collecting its metrics every interval until the worker is terminated.

``python -m examples.worker_monitoring demo`` tells the whole story; see its README.
"""
