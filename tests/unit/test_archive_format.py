"""The archive object format: every webhook comes back byte for byte, whatever its bytes are."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from wabridge.connectors.archive import ArchiveTicket, encode_batch, read_batch


def ticket(key: str, document: bytes, ids: list[str]) -> ArchiveTicket:
    loop = asyncio.get_running_loop()
    return ArchiveTicket(
        key, "t1", datetime(2026, 12, 3, tzinfo=UTC), ids, document, loop.create_future(), loop.create_future()
    )


async def test_documents_with_newlines_and_any_bytes_come_back_exactly() -> None:
    documents = [b'{\n  "a": 1\n}', b"", b"\x00\xff\n\n{not json", "Olá 👋".encode() * 1000]
    batch = [ticket(f"t1/2026-12-03/1-w{i}.json", d, [f"wamid.{i}"]) for i, d in enumerate(documents)]
    webhooks = read_batch("t1/x.wab", encode_batch("t1", batch))
    assert [w.document for w in webhooks] == documents
    assert [w.key for w in webhooks] == [t.key for t in batch]
    assert [w.ids for w in webhooks] == [(f"wamid.{i}",) for i in range(len(documents))]
    assert {w.tenant_id for w in webhooks} == {"t1"} and {w.received_at for w in webhooks} == {
        "2026-12-03T00:00:00.000Z"
    }


@pytest.mark.parametrize("data", [b"", b"not an index\n{}", b'{"format":"other/1"}\n', b"[1,2]\n"])
def test_an_object_that_is_not_an_archive_batch_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a wabridge-archive"):
        read_batch("t1/x.wab", data)
