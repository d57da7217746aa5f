"""The benchmark's accounting and plan, on constructed inputs whose answers are known. No I/O."""

from __future__ import annotations

import pytest

from wabridge.bench.accounting import Arrival, SentMessage, account
from wabridge.bench.latency import LatencyHistogram
from wabridge.bench.plan import (
    LoadShape,
    bench_wamid,
    customer_wa_id,
    parse_bench_wamid,
    plan_messages,
    plan_posts,
    run_prefix,
)

T0 = 1_700_000_000.0


def sent(customer: int, seq: int, *, at: float | None = None, accepted: bool = True) -> SentMessage:
    return SentMessage(
        wamid=bench_wamid("run1", customer, seq),
        customer=str(customer),
        from_id=customer_wa_id(customer),
        seq=seq,
        sent_at=T0 + (at if at is not None else seq),
        accepted=accepted,
    )


def arrived(message: SentMessage, after_s: float, from_id: str | None = None) -> Arrival:
    return Arrival(message.wamid, from_id or message.from_id, message.sent_at + after_s)


def test_every_message_once_and_in_order_counts_nothing_against_the_pipeline() -> None:
    a = [sent(0, seq) for seq in range(3)]
    b = [sent(1, seq, at=seq + 0.5) for seq in range(3)]
    # Customers interleave freely; each customer's own messages arrive in order.
    arrivals = [arrived(b[0], 0.1), arrived(a[0], 0.7), arrived(a[1], 0.2), arrived(b[1], 0.3)]
    arrivals += [arrived(b[2], 0.1), arrived(a[2], 0.4)]

    counts = account([*a, *b], arrivals)

    assert (counts.sent, counts.accepted, counts.arrived) == (6, 6, 6)
    assert (counts.lost, counts.duplicates, counts.out_of_order) == (0, 0, 0)
    assert (counts.unexpected, counts.misrouted, counts.arrived_unaccepted) == (0, 0, 0)
    assert sorted(round(ms) for ms in counts.e2e_ms) == [100, 100, 200, 300, 400, 700]
    # First arrivals from T0 + 0.6 s to T0 + 2.6 s: five intervals in 2 s.
    assert counts.throughput_msgs_s == pytest.approx(2.5)


def test_an_accepted_message_that_never_arrives_is_lost_and_a_refused_one_is_not() -> None:
    delivered, missing, refused = sent(0, 0), sent(0, 1), sent(0, 2, accepted=False)

    counts = account([delivered, missing, refused], [arrived(delivered, 0.05)])

    assert counts.lost == 1
    assert counts.lost_examples == (missing.wamid,)
    assert (counts.accepted, counts.arrived) == (2, 1)
    assert not counts.complete


def test_a_refused_message_that_arrives_anyway_is_reported_but_is_no_error() -> None:
    refused = sent(0, 0, accepted=False)

    counts = account([refused], [arrived(refused, 0.05)])

    assert (counts.lost, counts.duplicates, counts.arrived_unaccepted) == (0, 0, 1)


def test_every_arrival_beyond_the_first_of_a_wamid_is_a_duplicate() -> None:
    once, twice, thrice = sent(0, 0), sent(1, 0), sent(2, 0)
    arrivals = [arrived(once, 0.1), arrived(twice, 0.1), arrived(thrice, 0.1)]
    arrivals += [arrived(twice, 0.5), arrived(thrice, 0.6), arrived(thrice, 0.9)]

    counts = account([once, twice, thrice], arrivals)

    assert counts.duplicates == 3
    assert set(counts.duplicate_examples) == {twice.wamid, thrice.wamid}
    assert counts.lost == 0
    # Latency is the first arrival's.
    assert sorted(round(ms) for ms in counts.e2e_ms) == [100, 100, 100]


def test_a_message_that_arrives_after_a_later_one_of_its_customer_is_out_of_order() -> None:
    a = [sent(0, seq) for seq in range(4)]
    b = [sent(1, seq) for seq in range(2)]
    # Customer 0: 2 overtakes 0 and 1 (two violations), 3 is in order; customer 1 is in order.
    arrivals = [arrived(a[2], 0.1), arrived(b[0], 0.1), arrived(a[0], 3), arrived(a[1], 2), arrived(b[1], 0.1)]
    arrivals.append(arrived(a[3], 0.1))

    counts = account([*a, *b], arrivals)

    assert counts.out_of_order == 2
    assert counts.out_of_order_examples == (a[0].wamid, a[1].wamid)
    assert (counts.lost, counts.duplicates) == (0, 0)


def test_order_is_judged_on_first_arrivals_only() -> None:
    a = [sent(0, seq) for seq in range(3)]
    # A late second copy of 0 after 2 is a duplicate, not an order violation.
    arrivals = [arrived(a[0], 0.1), arrived(a[1], 0.1), arrived(a[2], 0.1), arrived(a[0], 5)]

    counts = account(a, arrivals)

    assert (counts.duplicates, counts.out_of_order) == (1, 0)


def test_a_copy_at_genesys_before_the_send_counts_for_order_and_duplicates_but_not_latency() -> None:
    """What the smoke test injects: a copy of a customer's last message, at Genesys before the run."""
    a = [sent(0, seq) for seq in range(5)]
    early_copy = Arrival(a[4].wamid, a[4].from_id, T0 - 10)
    arrivals = [early_copy, *(arrived(message, 0.25) for message in a)]

    counts = account(a, arrivals)

    assert counts.out_of_order == 4  # seq 0..3 each arrived after (a copy of) seq 4
    assert counts.duplicates == 1
    assert counts.lost == 0
    assert sorted(round(ms) for ms in counts.e2e_ms) == [250] * 5


def test_arrivals_the_run_never_sent_and_arrivals_for_the_wrong_customer_are_counted_apart() -> None:
    message = sent(0, 0)
    stranger = Arrival(bench_wamid("run1", 0, 99), customer_wa_id(0), T0 + 1)

    counts = account([message], [arrived(message, 0.1, from_id=customer_wa_id(7)), stranger])

    assert (counts.unexpected, counts.misrouted) == (1, 1)
    assert (counts.lost, counts.duplicates, counts.out_of_order) == (0, 0, 0)


def test_nothing_arrived_means_everything_accepted_is_lost_and_no_throughput() -> None:
    messages = [sent(c, 0) for c in range(10)]

    counts = account(messages, [])

    assert (counts.lost, counts.arrived, counts.throughput_msgs_s, counts.e2e_ms) == (10, 0, 0.0, [])


def test_latency_percentiles_come_from_the_histogram() -> None:
    histogram = LatencyHistogram(float(ms) for ms in range(1, 1001))

    summary = histogram.summary()

    assert summary.count == 1000
    assert summary.p50_ms == pytest.approx(500, rel=0.01)
    assert summary.p99_ms == pytest.approx(990, rel=0.01)
    assert summary.max_ms == pytest.approx(1000, rel=0.01)
    assert LatencyHistogram().summary().p99_ms == 0.0


# --- the plan the accounting relies on ---------------------------------------------------------


def test_wamids_name_the_run_the_customer_and_the_sequence() -> None:
    wamid = bench_wamid("ab12", 7, 41)

    assert wamid.startswith(run_prefix("ab12"))
    assert parse_bench_wamid(wamid) == ("ab12", 7, 41)
    assert parse_bench_wamid("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=") is None


def test_messages_go_round_robin_over_customers_with_per_customer_sequences() -> None:
    shape = LoadShape(rate=20, duration_s=3, customers=4, tenants=2, media_share=0.1)

    messages = plan_messages("r", shape)

    assert len(messages) == 60
    assert [m.customer for m in messages[:6]] == [0, 1, 2, 3, 0, 1]
    assert [m.seq for m in messages if m.customer == 2] == list(range(15))
    assert {m.tenant for m in messages if m.customer in (0, 2)} == {0}
    assert {m.tenant for m in messages if m.customer in (1, 3)} == {1}
    assert sum(m.media for m in messages) == 6
    assert messages[20].at_s == pytest.approx(1.0)


def test_posts_batch_one_tenants_messages_and_duplicates_repeat_an_earlier_post() -> None:
    shape = LoadShape(rate=100, duration_s=2, customers=10, tenants=2, batch_size=4, duplicate_share=0.3, seed=7)
    messages = plan_messages("r", shape)

    posts = plan_posts(messages, shape)

    originals = [post for post in posts if not post.duplicate]
    duplicates = [post for post in posts if post.duplicate]
    assert sorted(m.wamid for post in originals for m in post.messages) == sorted(m.wamid for m in messages)
    assert all(len({m.tenant for m in post.messages}) == 1 for post in posts)
    assert all(len(post.messages) <= 4 for post in posts)
    assert [post.at_s for post in posts] == sorted(post.at_s for post in posts)
    by_index = {post.index: post for post in originals}
    assert 0 < len(duplicates) < len(originals)
    for duplicate in duplicates:
        original = by_index[duplicate.index]
        assert duplicate.messages == original.messages
        assert duplicate.at_s > original.at_s


@pytest.mark.parametrize(
    "bad",
    [
        {"rate": 0, "duration_s": 1},
        {"rate": 1, "duration_s": 1, "customers": 1, "tenants": 2},
        {"rate": 1, "duration_s": 1, "duplicate_share": 1.5},
    ],
)
def test_shapes_that_cannot_run_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoadShape(**bad)  # type: ignore[arg-type]
