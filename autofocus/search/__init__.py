"""Numbers → a focal plane: ask/tell strategies, the engine, the request and the result.

Imports `autofocus.scoring` and `autofocus_drivers.base`, never the service or the stacks.
"""
