"""The `cordmap` command: each command parses its options, calls one function, prints.

No logic lives here; one module per area registers its commands on `app`
(`cordmap.cli.common` holds what they share).
"""

from cordmap.cli import cases, learn, planning, study  # noqa: F401 (they register the commands)
from cordmap.cli.common import app

__all__ = ["app"]
