"""The app factory without a broker: keys serialise alike on topics and tables, settings win."""

from __future__ import annotations

from pathlib import Path

import pytest

from wabridge.settings import Settings
from wabridge.streams.app import create_app, create_table, stage_topic
from wabridge.streams.topics import WA_READY, WORKER_GROUP


def test_table_keys_serialise_and_partition_like_the_stage_topic(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, kafka_partitions=6, kafka_topic_prefix="x-", state_dir=tmp_path)
    app = create_app(settings)
    topic = stage_topic(app, settings, WA_READY)
    table = create_table(app, "conversations", default=dict)
    key = "tenant-1:31612345678"
    assert topic.prepare_key(key, None)[0] == key.encode()
    assert table.changelog_topic.prepare_key(key, None)[0] == key.encode()
    assert table.changelog_topic.get_topic_name() == f"x-{WORKER_GROUP}-conversations-changelog"
    assert table.changelog_topic.partitions == topic.partitions == 6
    # Keys read back from the changelog (recovery) have the type of the live ones.
    assert table.changelog_topic.key_type is str


def test_faust_environment_variables_do_not_override_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", "99")
    monkeypatch.setenv("WEB_PORT", "1")
    monkeypatch.setenv("PROCESSING_GUARANTEE", "exactly_once")
    settings = Settings(_env_file=None, kafka_partitions=6, worker_port=3999, state_dir=tmp_path)
    app = create_app(settings)
    assert app.conf.topic_partitions == 6
    assert app.conf.web_port == 3999
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert str(app.conf.canonical_url) == "http://127.0.0.1:3999"


@pytest.mark.parametrize("idempotent", [True, False])
def test_producer_idempotence_follows_settings(tmp_path: Path, idempotent: bool) -> None:
    settings = Settings(_env_file=None, kafka_idempotent=idempotent, state_dir=tmp_path)
    producer = create_app(settings).producer
    assert producer._settings_extra().get("enable_idempotence", False) is idempotent
