"""The hosting layer: a dependency-injection container and an application builder with hosted
services, as Neuroglia has them, into which the scheduler registers itself."""
