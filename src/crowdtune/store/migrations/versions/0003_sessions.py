"""Sessions apart from tokens: the ``session`` table, and token expiry and revocation.

A signed-in browser gets a random session id (its SHA-256 in ``session.id_hash``) with an
absolute expiry and an idle timeout, instead of carrying the bearer token in its cookie;
``contributor.token_expires_at`` and ``contributor.token_revoked_at`` let a token expire or be
revoked. Existing contributors keep their tokens (no expiry, not revoked).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Plain ADD COLUMN (no batch mode), as in 0002: batch mode would copy and drop the contributor
# table, which the foreign keys of existing tasks and responses forbid.


def upgrade() -> None:
    op.add_column(
        "contributor", sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "contributor", sa.Column("token_revoked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contributor_id", sa.Integer(), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contributor_id"],
            ["contributor.id"],
            name=op.f("fk_session_contributor_id_contributor"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_session_id_hash")),
    )
    op.create_index(op.f("ix_session_contributor_id"), "session", ["contributor_id"])
    op.create_index(op.f("ix_session_expires_at"), "session", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_session_expires_at"), table_name="session")
    op.drop_index(op.f("ix_session_contributor_id"), table_name="session")
    op.drop_table("session")
    op.drop_column("contributor", "token_revoked_at")
    op.drop_column("contributor", "token_expires_at")
