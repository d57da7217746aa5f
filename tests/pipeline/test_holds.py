"""What an operator must fix holds that tenant, not its messages: they wait and flow once fixed,
none is failed, and other tenants are not held up."""

from __future__ import annotations

from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, pg_rows, wait_for
from tests.pipeline.test_faults import per_customer, texts


async def held_gauge(pipeline: Pipeline) -> float:
    async with pipeline.http.get(f"http://127.0.0.1:{pipeline.settings.worker_port}/metrics") as response:
        metrics = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("wabridge_tenant_held{") and 'tenant="acme"' in line
    )


async def test_genesys_refusing_a_tenants_credentials_holds_it_until_they_work_again(pipeline: Pipeline) -> None:
    acme_customers = ["16505550701", "16505550702"]
    client = pipeline.genesys.clients[ACME.client_id]
    first = await pipeline.send(ACME, texts(acme_customers, 2, "before "))
    await pipeline.wait_arrived(ACME, first)

    # The OAuth client is deleted in Genesys: its tokens stop working and logins are refused.
    pipeline.genesys.remove_client(ACME.client_id)
    pipeline.genesys.revoke_tokens(ACME.client_id)
    held = await pipeline.send(ACME, texts(acme_customers, 3, "held "))
    globex = await pipeline.send(GLOBEX, texts(["16505550801"], 3))
    await pipeline.wait_arrived(GLOBEX, globex)  # the other tenant is not held up

    async def on_hold() -> bool:
        return await held_gauge(pipeline) == 1.0

    await wait_for(on_hold, 30, "acme on hold", pipeline)
    assert not set(held) & set(pipeline.arrived_ids(ACME))

    pipeline.genesys.upsert_client(client)  # fixed by an operator
    await pipeline.wait_arrived(ACME, held, timeout_s=60)
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(first + held)  # each once
    for customer, seen in per_customer(pipeline, ACME).items():
        expected = [f"before {customer} #{n}" for n in range(2)] + [f"held {customer} #{n}" for n in range(3)]
        assert seen == expected
    failed = await pg_rows(pipeline.settings, "SELECT message_id FROM message_tracking WHERE status = 'failed'")
    assert failed == []
    assert await held_gauge(pipeline) == 0.0
