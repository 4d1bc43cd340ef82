"""Revision and rating projects, and the assignment order.

``project`` gets the rating scale (``scale_min``, ``scale_max``), the assignment order
(``assignment``: ``depth``, the new default, or ``breadth``, the order before) and
``editor_prefill``; ``item`` holds one response for the single-response kinds
(``response_b`` may be NULL) and their gold answers (``reference``, ``gold_low``,
``gold_high``); ``response`` holds a vote, a revised text (``revision``), a score (``score``,
``aspects``) or a skip (``skipped``), exactly one of them. Existing rows are pairwise votes and
keep their meaning.

On SQLite the three tables are rebuilt (batch mode): :func:`crowdtune.store.upgrade` turns
foreign keys off for the migration and checks them before it commits.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ONE_ANSWER = (
    "(CASE WHEN verdict IS NULL THEN 0 ELSE 1 END) + "
    "(CASE WHEN revision IS NULL THEN 0 ELSE 1 END) + "
    "(CASE WHEN score IS NULL THEN 0 ELSE 1 END) + "
    "(CASE WHEN skipped THEN 1 ELSE 0 END) = 1"
)
SCALE_VALID = (
    "(kind = 'rating' AND scale_min IS NOT NULL AND scale_max > scale_min) OR "
    "(kind != 'rating' AND scale_min IS NULL AND scale_max IS NULL)"
)
GOLD_RANGE_VALID = "(gold_low IS NULL AND gold_high IS NULL) OR gold_high >= gold_low"


def upgrade() -> None:
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("scale_min", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("scale_max", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("assignment", sa.String(length=16), server_default="depth", nullable=False)
        )
        batch.add_column(
            sa.Column("editor_prefill", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    # Before 0004 no rating project could collect anything; give any such project the default
    # scale so that the new check holds.
    op.execute("UPDATE project SET scale_min = 1, scale_max = 7 WHERE kind = 'rating'")
    with op.batch_alter_table("project") as batch:
        batch.create_check_constraint(
            op.f("ck_project_assignment_valid"), "assignment IN ('depth', 'breadth')"
        )
        batch.create_check_constraint(op.f("ck_project_scale_valid"), SCALE_VALID)
    with op.batch_alter_table("item") as batch:
        batch.alter_column("response_b", existing_type=sa.JSON(), nullable=True)
        batch.add_column(sa.Column("reference", sa.Text(), nullable=True))
        batch.add_column(sa.Column("gold_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gold_high", sa.Float(), nullable=True))
        batch.create_check_constraint(op.f("ck_item_gold_range_valid"), GOLD_RANGE_VALID)
    with op.batch_alter_table("response") as batch:
        batch.alter_column("verdict", existing_type=sa.String(length=3), nullable=True)
        batch.add_column(sa.Column("revision", sa.Text(), nullable=True))
        batch.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("aspects", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("skipped", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_check_constraint(op.f("ck_response_one_answer"), ONE_ANSWER)


def downgrade() -> None:
    # Answers other than votes (and single-response items) cannot be kept by the old schema.
    op.execute("DELETE FROM response WHERE verdict IS NULL")
    op.execute(
        "UPDATE task SET answered = EXISTS "
        "(SELECT 1 FROM response WHERE response.task_id = task.id)"
    )
    with op.batch_alter_table("response") as batch:
        batch.drop_constraint(op.f("ck_response_one_answer"), type_="check")
        batch.drop_column("skipped")
        batch.drop_column("aspects")
        batch.drop_column("score")
        batch.drop_column("revision")
        batch.alter_column("verdict", existing_type=sa.String(length=3), nullable=False)
    op.execute("DELETE FROM task WHERE item_id IN (SELECT id FROM item WHERE response_b IS NULL)")
    op.execute("DELETE FROM item WHERE response_b IS NULL")
    with op.batch_alter_table("item") as batch:
        batch.drop_constraint(op.f("ck_item_gold_range_valid"), type_="check")
        batch.drop_column("gold_high")
        batch.drop_column("gold_low")
        batch.drop_column("reference")
        batch.alter_column("response_b", existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table("project") as batch:
        batch.drop_constraint(op.f("ck_project_scale_valid"), type_="check")
        batch.drop_constraint(op.f("ck_project_assignment_valid"), type_="check")
        batch.drop_column("editor_prefill")
        batch.drop_column("assignment")
        batch.drop_column("scale_max")
        batch.drop_column("scale_min")
