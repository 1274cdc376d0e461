"""Real-time microscope autofocus: focus measures, search strategies, the engine, the daemon."""

__version__ = "0.1.0"
