"""Initial schema: contributor, project, item, task, response, round.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contributor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('admin', 'annotator')", name=op.f("ck_contributor_role_valid")
        ),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_contributor_name_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contributor")),
        sa.UniqueConstraint("name", name=op.f("uq_contributor_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_contributor_token_hash")),
    )
    op.create_table(
        "project",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('pairwise', 'rating', 'revision')", name=op.f("ck_project_kind_valid")
        ),
        sa.CheckConstraint("length(name) > 0", name=op.f("ck_project_name_not_empty")),
        sa.CheckConstraint("overlap >= 1", name=op.f("ck_project_overlap_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
        sa.UniqueConstraint("name", name=op.f("uq_project_name")),
    )
    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("response_a", sa.JSON(), nullable=False),
        sa.Column("response_b", sa.JSON(), nullable=False),
        sa.Column("model_a", sa.String(length=200), nullable=True),
        sa.Column("model_b", sa.String(length=200), nullable=True),
        sa.Column("gold", sa.String(length=3), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("gold IN ('a', 'b', 'tie')", name=op.f("ck_item_gold_valid")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_item_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
        sa.UniqueConstraint(
            "project_id", "external_id", name=op.f("uq_item_project_id_external_id")
        ),
    )
    op.create_index(op.f("ix_item_project_id"), "item", ["project_id"], unique=False)
    op.create_table(
        "round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=100), nullable=False),
        sa.Column("scheme", sa.String(length=100), nullable=False),
        sa.Column("winner", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_round_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round")),
    )
    op.create_index(op.f("ix_round_project_id"), "round", ["project_id"], unique=False)
    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("contributor_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contributor_id"], ["contributor.id"], name=op.f("fk_task_contributor_id_contributor")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_task_item_id_item")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint(
            "item_id", "contributor_id", name=op.f("uq_task_item_id_contributor_id")
        ),
    )
    op.create_index(op.f("ix_task_contributor_id"), "task", ["contributor_id"], unique=False)
    op.create_table(
        "response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("contributor_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("seconds_spent", sa.Double(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('a', 'b', 'tie')", name=op.f("ck_response_verdict_valid")),
        sa.CheckConstraint(
            "seconds_spent IS NULL OR seconds_spent >= 0",
            name=op.f("ck_response_seconds_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["contributor_id"],
            ["contributor.id"],
            name=op.f("fk_response_contributor_id_contributor"),
        ),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_response_task_id_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response")),
        sa.UniqueConstraint(
            "contributor_id",
            "idempotency_key",
            name=op.f("uq_response_contributor_id_idempotency_key"),
        ),
        sa.UniqueConstraint("task_id", name=op.f("uq_response_task_id")),
    )


def downgrade() -> None:
    op.drop_table("response")
    op.drop_index(op.f("ix_task_contributor_id"), table_name="task")
    op.drop_table("task")
    op.drop_index(op.f("ix_round_project_id"), table_name="round")
    op.drop_table("round")
    op.drop_index(op.f("ix_item_project_id"), table_name="item")
    op.drop_table("item")
    op.drop_table("project")
    op.drop_table("contributor")
