"""Prefect flows around the edition engine.

Defaults set before Prefect is imported: no analytics and no usage reports (machines
may have no network: a server that cannot reach Prefect's telemetry service logs "Failed
to send telemetry" at every start), and a patient start for the ephemeral server on a
small, busy machine. Values the user set win. The command line imports this package
first, so every `edition` command has them.
"""

import os

TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
