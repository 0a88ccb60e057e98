"""The policies layer: retry and circuit-breaker policies, breakers shared through the store,
failure handlers, and what the engine does with a run's outcome under them."""
