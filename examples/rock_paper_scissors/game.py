"""Rock-paper-scissors: each player is told its hand and sends it to the game;
the game names the winner once both hands are in.

The moves may reach the game in either order, so the game keeps them by
player name, not by arrival: `Simulation.exhaust` checks that every order
ends the same (`report.deterministic`).
"""

from __future__ import annotations

from typing import Literal

from attrs import frozen

from pachytype import Activation, Address, Entity

Hand = Literal["rock", "paper", "scissors"]

BEATS: dict[str, str] = {"rock": "scissors", "paper": "rock", "scissors": "paper"}
"""hand -> the hand it beats."""


@frozen
class Play:
    """Tell player `me` to play `hand` in `game`."""

    me: str
    hand: Hand
    game: Address[Move]


@frozen
class Move:
    """Player `player` plays `hand`."""

    player: str
    hand: Hand


class Player(Entity[str, Play, str | None]):
    """Plays the hand it is told to; its state is the hand it played."""

    def activate(self, msg: Play, state: str | None) -> Activation[str | None]:
        return [msg.game.post(Move(msg.me, msg.hand))], msg.hand


@frozen
class GameState:
    """The hands played, by player name; the winner ("draw" on a tie) once both are in."""

    hands: tuple[tuple[str, str], ...] = ()
    winner: str | None = None


class Game(Entity[str, Move, GameState]):
    """Referees one game of two players."""

    def init(self, id: str) -> GameState:
        return GameState()

    def activate(self, msg: Move, state: GameState) -> Activation[GameState]:
        if state.winner is not None or any(p == msg.player for p, _ in state.hands):
            return [], state  # game over, or a second move from the same player
        hands = tuple(sorted([*state.hands, (msg.player, msg.hand)]))
        if len(hands) < 2:
            return [], GameState(hands)
        return [], GameState(hands, winner(hands[0], hands[1]))


def winner(a: tuple[str, str], b: tuple[str, str]) -> str:
    """The name of the player whose hand wins, or "draw"."""
    if a[1] == b[1]:
        return "draw"
    return a[0] if BEATS[a[1]] == b[1] else b[0]
