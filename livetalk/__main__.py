"""``python -m livetalk`` runs the CLI."""

from livetalk.cli import main

raise SystemExit(main())
