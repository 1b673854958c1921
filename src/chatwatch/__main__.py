"""``python -m chatwatch``: the same as the ``chatwatch`` command."""

from chatwatch.cli import main

main()
