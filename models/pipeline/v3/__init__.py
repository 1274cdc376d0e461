"""focusnet-v3: defocus-aware focus model (graph, data, training, export, evaluation)."""
