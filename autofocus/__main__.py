"""`python -m autofocus` runs the CLI."""

from autofocus.cli import main

if __name__ == "__main__":
    main()
