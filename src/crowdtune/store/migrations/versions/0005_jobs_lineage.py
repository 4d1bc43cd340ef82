"""Jobs, the model lineage, and rounds that train language models.

``job`` holds work a worker runs outside the web process (state, progress, message, heartbeat,
result, attempts); ``model_version`` the lineage of a project's models (the base, every
candidate, which one is the base now); ``project.base_model`` the model the first round starts
from (existing projects: ``tiny``); ``round.candidate`` what its groups trained (existing rounds:
``preference``) and ``round.job_id`` the job that ran it (unique: a retried job cannot store
its round twice).

Plain ADD COLUMN and a unique index (no batch mode): SQLite cannot add a UNIQUE column, and a
batch copy of ``project`` is refused by the foreign keys pointing at it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "project",
        sa.Column("base_model", sa.String(length=500), server_default="tiny", nullable=False),
    )
    op.add_column(
        "round",
        sa.Column("candidate", sa.String(length=16), server_default="preference", nullable=False),
    )
    op.add_column("round", sa.Column("job_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_round_job_id"), "round", ["job_id"], unique=True)
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_job_state_valid"),
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_job_progress_valid")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_job_project_id_project")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    op.create_index(op.f("ix_job_project_id"), "job", ["project_id"])
    op.create_index("ix_job_state_id", "job", ["state", "id"])
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("round_number", sa.Integer(), nullable=True),
        sa.Column("group", sa.Integer(), nullable=True),
        sa.Column("parent", sa.String(length=200), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("winner", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("is_base", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("evaluation", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_model_version_project_id_project")
        ),
        sa.ForeignKeyConstraint(
            ["round_id"], ["round.id"], name=op.f("fk_model_version_round_id_round")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_version")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_model_version_project_id_name")),
    )
    op.create_index(op.f("ix_model_version_project_id"), "model_version", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_model_version_project_id"), table_name="model_version")
    op.drop_table("model_version")
    op.drop_index("ix_job_state_id", table_name="job")
    op.drop_index(op.f("ix_job_project_id"), table_name="job")
    op.drop_table("job")
    op.drop_index(op.f("ix_round_job_id"), table_name="round")
    with op.batch_alter_table("round") as batch:
        batch.drop_column("job_id")
        batch.drop_column("candidate")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("base_model")
