"""A bank: accounts that take deposits and withdrawals and transfer money to
each other, never letting a balance go negative."""
