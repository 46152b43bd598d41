"""Version 1 of an application deployed with rolling upgrades (see `rolling_v2`
and tests/postgres/test_rolling.py): counters that check their own sequence
and audits that check the notes counters send them."""
