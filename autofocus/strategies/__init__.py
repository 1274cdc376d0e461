"""Focus search strategies: pure ask/tell state machines (see `base`)."""
