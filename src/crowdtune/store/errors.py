"""Errors the store raises; the server maps each to one HTTP status (404, 409, 403, 422, 503,
401)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFoundError(StoreError, LookupError):
    """A row named by id or name does not exist."""


class UnusableDatabaseError(StoreError):
    """The database cannot be served: it does not open, is damaged, or refuses writes."""


class ConflictError(StoreError):
    """The request contradicts what is stored: a duplicate name, a task answered already."""


class LostRaceError(ConflictError):
    """A write lost a race with a concurrent transaction (another server process on
    PostgreSQL): run it again (:func:`crowdtune.store.db.retrying`); the message says what
    to do if every attempt loses."""


class ForbiddenError(StoreError):
    """The row exists but belongs to another contributor."""


class BusyError(StoreError):
    """The database stayed locked by other writers for longer than the busy timeout."""


class CredentialError(StoreError):
    """A token or session id that is unknown, expired or revoked (the message says which)."""


class ReusedKeyError(StoreError, ValueError):
    """An idempotency key came back with a different request body than the one it stored."""
