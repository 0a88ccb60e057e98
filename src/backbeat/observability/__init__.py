"""The observability layer: OpenTelemetry traces and metrics, Prometheus exposition and the
in-process task metrics. Each attaches to a scheduler through its run hooks and events."""
