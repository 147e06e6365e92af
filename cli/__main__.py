"""``python -m cli`` runs the ``receipts`` command line."""

from cli.main import main

main()
