"""Replay: intents a killed run wrote to the outbox but did not confirm go out again first."""

from __future__ import annotations

import logging

from syncd.cycle.context import RunContext
from syncd.cycle.teams import pending_team_intents

log = logging.getLogger(__name__)


def replay(run: RunContext) -> bool:
    """Hand the outbox's unfinished intents to the pusher; False when the run was stopped."""
    # Account team writes wait for the push stage: they go out after the Account owner changes.
    unfinished, _team = pending_team_intents(run.ledger.outbox.unfinished())
    run.progress.stage("replay", total=len(unfinished))
    if not unfinished:
        return True
    run.report.replayed = len(unfinished)
    log.info("replaying %d intents a previous run left unconfirmed", len(unfinished))
    done = run.pusher.replay(unfinished)
    run.progress.advance(len(unfinished))
    return done
