"""Rock-paper-scissors: two players, a referee, and a determinism check."""
