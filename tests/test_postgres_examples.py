"""The examples' ecosystem tests (bank, ping-pong), run on Postgres with the
same `ecosystem` fixture override as the conformance suite."""

from __future__ import annotations

from tests.test_example_bank import (
    test_a_transfer_to_self_leaves_the_balance_unchanged,
    test_amounts_must_be_positive,
    test_an_overdraft_is_refused_and_the_balance_kept,
    test_deposit_withdraw_and_transfer_move_money,
    test_the_demo_tour_prints_and_returns_the_balances,
    test_transfers_under_any_interleaving_conserve_money,
)
from tests.test_example_ping_pong import (
    test_a_ping_gets_its_pong,
    test_a_pong_sent_from_outside_is_recorded_like_any_other,
    test_a_rally_of_zero_sends_nothing,
    test_a_rally_plays_every_ping_and_pong_and_stops,
    test_follow_sees_each_pong_arrive_in_order,
    test_two_pingers_share_one_ponger_and_each_gets_only_its_pongs,
)
from tests.test_postgres_conformance import ecosystem

__all__ = [
    "ecosystem",
    "test_a_ping_gets_its_pong",
    "test_a_pong_sent_from_outside_is_recorded_like_any_other",
    "test_a_rally_of_zero_sends_nothing",
    "test_a_rally_plays_every_ping_and_pong_and_stops",
    "test_a_transfer_to_self_leaves_the_balance_unchanged",
    "test_amounts_must_be_positive",
    "test_an_overdraft_is_refused_and_the_balance_kept",
    "test_deposit_withdraw_and_transfer_move_money",
    "test_follow_sees_each_pong_arrive_in_order",
    "test_the_demo_tour_prints_and_returns_the_balances",
    "test_transfers_under_any_interleaving_conserve_money",
    "test_two_pingers_share_one_ponger_and_each_gets_only_its_pongs",
]
