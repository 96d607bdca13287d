"""Browser ClientHello shapes, kept as data (one JSON file per browser, see README.md), the
builder that turns one into a fresh hello (`hello`), and the attempt that sends it (`attempt`)."""

from __future__ import annotations
