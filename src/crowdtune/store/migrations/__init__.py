"""Alembic migrations of the feedback store; run them with :func:`crowdtune.store.upgrade`."""
