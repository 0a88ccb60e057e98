"""The API layer: the ``BackgroundTaskScheduler`` facade, building tasks from what users hand it,
listing them, the bus, configuration objects, admin operations and registration into an
application's services."""
