"""``backbeat.prometheus``: Prometheus exposition of runs (see :mod:`backbeat.observability.prometheus`)."""

from __future__ import annotations

from backbeat.observability.prometheus import PrometheusMetrics, metrics_app

__all__ = ["PrometheusMetrics", "metrics_app"]
