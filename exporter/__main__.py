"""`python -m exporter` is the same program as `reachability-exporter`."""

from exporter.cli import main

raise SystemExit(main())
