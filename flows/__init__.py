"""Prefect flows around the edition engine.

Defaults set before Prefect is imported: no analytics (machines may have no network),
and a patient start for the ephemeral server on a small, busy machine.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
