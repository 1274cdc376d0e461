"""The daemon: HTTP API (`api/`), jobs and their SQLite store (`jobs/`), metrics, the microscope.

Importing this package imports no web framework: `autofocus.service.api` does.
"""
