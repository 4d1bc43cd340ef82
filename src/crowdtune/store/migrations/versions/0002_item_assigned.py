"""Counters that keep assignment fast: item.assigned and task.answered, with their indexes.

``item.assigned`` is each item's task count, so the next item is read from one index instead of
counting every item's tasks; ``task.answered`` marks tasks with a response, so a contributor's
open task is found without reading all their answered ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Plain ADD COLUMN (no batch mode): on SQLite batch mode copies and drops the table, which the
# foreign keys of existing tasks forbid.


def upgrade() -> None:
    op.add_column("item", sa.Column("assigned", sa.Integer(), server_default="0", nullable=False))
    # Existing databases: count the tasks handed out so far.
    op.execute(
        "UPDATE item SET assigned = (SELECT count(*) FROM task WHERE task.item_id = item.id)"
    )
    op.create_index(
        op.f("ix_item_project_id_assigned_id"), "item", ["project_id", "assigned", "id"]
    )
    op.add_column(
        "task", sa.Column("answered", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.execute(
        sa.text(
            "UPDATE task SET answered = EXISTS "
            "(SELECT 1 FROM response WHERE response.task_id = task.id)"
        )
    )
    op.create_index(op.f("ix_task_contributor_id_answered"), "task", ["contributor_id", "answered"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_contributor_id_answered"), table_name="task")
    op.drop_column("task", "answered")
    op.drop_index(op.f("ix_item_project_id_assigned_id"), table_name="item")
    op.drop_column("item", "assigned")
