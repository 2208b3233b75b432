"""How Kafka clients authenticate to an external cluster: the allowed settings, their checks,
and the connection options every kafka-python client is built with."""

from __future__ import annotations

import os
from typing import Any

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def security_problem(protocol: str, mechanism: str, username: str, password_env: str) -> str:
    """What is wrong with these `streams.*` security settings, naming the field; '' when nothing."""
    if protocol not in SECURITY_PROTOCOLS:
        return f"streams.security_protocol ({protocol!r}) must be one of {', '.join(SECURITY_PROTOCOLS)}"
    if not protocol.startswith("SASL"):
        return ""
    if mechanism not in SASL_MECHANISMS:
        return (
            f"streams.sasl_mechanism ({mechanism!r}) must be one of {', '.join(SASL_MECHANISMS)} "
            f"with streams.security_protocol={protocol}"
        )
    if not username or not password_env:
        return (
            f"streams.security_protocol={protocol} needs streams.sasl_username and "
            "streams.sasl_password_env (the name of the environment variable holding the password)"
        )
    return ""


def security_options(
    protocol: str, mechanism: str, username: str, password_env: str, ssl_files: dict[str, str]
) -> dict[str, Any]:
    """The kafka-python options for these settings (none for PLAINTEXT); the SASL password is
    read from `password_env` here, at connection time, and a missing one is an error naming the
    variable. `ssl_files`: ssl_cafile, ssl_certfile, ssl_keyfile (empty ones are left out)."""
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        password = os.environ.get(password_env)
        if password is None:
            raise ValueError(
                f"streams.sasl_password_env names {password_env!r}, which is not set in this "
                "process's environment: export it where the service starts"
            )
        options |= {"sasl_mechanism": mechanism, "sasl_plain_username": username, "sasl_plain_password": password}
    if protocol.endswith("SSL"):
        options |= {k: v for k, v in ssl_files.items() if v}
    return options
