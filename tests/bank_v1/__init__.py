"""The bank's Account as it was at state version 1 (balances in whole units).

Kept to write version-1 data the way the old code did, so the upgrade of
`examples.bank` can be tested on real stored bytes.
"""
