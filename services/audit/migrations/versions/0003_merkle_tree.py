"""The RFC 9162 Merkle tree over the records replaces the hash chain: each record keeps its
topic, partition, offset, account and cause; the tree's complete subtrees and its head;
signed tree heads; a retention period below which no record can be purged; and the
service's own database role, which may only INSERT and SELECT the records.

The leaf data of a record written before this revision is its stored payload (the event
alone); the tree is built over those records here, so one tree covers the whole log.

Revision ID: 0003
"""

import hashlib

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLE = "audit_writer"
APPEND_ONLY = ("audit_records", "merkle_nodes", "signed_tree_heads")


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _tree_of_existing_records() -> None:
    """Leaf and interior nodes of the records already stored, in seq order (leaf = seq - 1).
    Written out here rather than imported so that this revision keeps meaning what it
    meant when it ran."""
    bind = op.get_bind()
    stack: list[bytes] = []
    size = 0
    batch: list[dict[str, object]] = []
    nodes = sa.table(
        "merkle_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("index", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    rows = bind.execute(sa.text("SELECT seq, payload FROM audit_records ORDER BY seq"))
    for seq, payload in rows:
        if seq != size + 1:
            raise RuntimeError(f"audit_records is not contiguous at seq {seq}: verify first")
        current = _leaf_hash(bytes(payload))
        batch.append({"level": 0, "index": size, "hash": current})
        level, carry = 0, size
        while carry & 1:
            current = _node_hash(stack.pop(), current)
            level += 1
            carry >>= 1
            batch.append({"level": level, "index": size >> level, "hash": current})
        stack.append(current)
        size += 1
        if len(batch) >= 10_000:
            op.bulk_insert(nodes, batch)
            batch = []
    if batch:
        op.bulk_insert(nodes, batch)
    bind.execute(
        sa.text("INSERT INTO merkle_head (tree, size, frontier) VALUES ('events', :size, :f)"),
        {"size": size, "f": b"".join(stack)},
    )


def upgrade() -> None:
    # Schema changes, not changes of records: no row is updated.
    op.alter_column("audit_records", "topic", nullable=True)
    for column in ("payload_hash", "previous_hash", "record_hash"):
        op.alter_column("audit_records", column, nullable=True)
    op.add_column("audit_records", sa.Column("partition", sa.Integer))
    op.add_column("audit_records", sa.Column("offset", sa.BigInteger))
    op.add_column("audit_records", sa.Column("account", sa.Text))
    op.add_column("audit_records", sa.Column("causation_id", UUID(as_uuid=True)))
    # Keyset pagination on seq within each filter.
    op.drop_index("ix_audit_records_correlation_id", "audit_records")
    for column in ("correlation_id", "account", "event_type", "source", "actor"):
        op.create_index(f"audit_records_{column}_seq", "audit_records", [column, "seq"])
    op.create_index("audit_records_occurred_at", "audit_records", ["occurred_at"])

    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("index", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "merkle_head",
        sa.Column("tree", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "signed_tree_heads",
        sa.Column("tree_size", sa.BigInteger, primary_key=True),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_retention",
        sa.Column("singleton", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("years", sa.Integer, nullable=False),
        sa.CheckConstraint("singleton", name="audit_retention_one_row"),
        sa.CheckConstraint("years >= 1", name="audit_retention_positive"),
    )
    op.execute("INSERT INTO audit_retention (singleton, years) VALUES (true, 6)")
    _tree_of_existing_records()
    op.drop_table("chain_head")

    # Write once. UPDATE and TRUNCATE are refused to everyone, superusers included. DELETE
    # is refused too, except a purge: a session that says so (SET audit.purge = 'on') may
    # delete a record older than the retention period (six years unless lengthened; it can
    # never be shortened), and nothing younger. The tree's nodes and signed heads are never
    # deleted, so proofs for the records kept stay valid after a purge.
    op.execute(
        """CREATE OR REPLACE FUNCTION audit_is_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE retention integer;
        BEGIN
          IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_records'
             AND current_setting('audit.purge', true) = 'on' THEN
            SELECT years INTO retention FROM audit_retention;
            IF OLD.recorded_at < now() - make_interval(years => retention) THEN
              RETURN OLD;
            END IF;
            RAISE EXCEPTION 'audit record % is inside the retention period of % years',
              OLD.seq, retention;
          END IF;
          RAISE EXCEPTION '% are append-only (% refused)', TG_TABLE_NAME, TG_OP;
        END $$"""
    )
    for table in ("merkle_nodes", "signed_tree_heads"):
        op.execute(
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION audit_is_append_only()"""
        )
        op.execute(
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only()"""
        )
    op.execute(
        """CREATE OR REPLACE FUNCTION audit_retention_only_grows() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP <> 'UPDATE' OR NEW.years < OLD.years THEN
            RAISE EXCEPTION 'the audit retention period can only be lengthened';
          END IF;
          RETURN NEW;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER audit_retention_only_grows BEFORE UPDATE OR DELETE ON audit_retention
        FOR EACH ROW EXECUTE FUNCTION audit_retention_only_grows()"""
    )

    # The service's role. Roles are cluster-wide, so it may exist already (another database
    # of the same server); NOLOGIN: the service's login role is made a member of it in
    # production, and a superuser connection switches to it (SET ROLE) in development.
    op.execute(
        f"""DO $$ BEGIN
          CREATE ROLE {ROLE} NOLOGIN;
        EXCEPTION WHEN duplicate_object THEN NULL;
        END $$"""
    )
    # Everything the plumbing needs (outbox, inbox, keys, and the tables later revisions
    # add), then the records, nodes and signed heads back to INSERT and SELECT only.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ROLE}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {ROLE}")
    for table in APPEND_ONLY:
        op.execute(f"REVOKE ALL ON {table} FROM {ROLE}")
        op.execute(f"GRANT SELECT, INSERT ON {table} TO {ROLE}")
    op.execute(f"REVOKE ALL ON merkle_head, audit_retention FROM {ROLE}")
    op.execute(f"GRANT SELECT, UPDATE ON merkle_head TO {ROLE}")
    op.execute(f"GRANT SELECT ON audit_retention TO {ROLE}")


def downgrade() -> None:
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {ROLE}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE ON SEQUENCES FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    for table in ("merkle_nodes", "signed_tree_heads"):
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.execute(
        """CREATE OR REPLACE FUNCTION audit_is_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP; END $$"""
    )
    op.drop_table("audit_retention")
    op.execute("DROP FUNCTION audit_retention_only_grows()")
    op.drop_table("signed_tree_heads")
    op.drop_table("merkle_head")
    op.drop_table("merkle_nodes")
    op.create_table(
        "chain_head",
        sa.Column("chain", sa.Text, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.Text, nullable=False),
    )
    op.execute(
        """INSERT INTO chain_head (chain, last_seq, last_hash)
        SELECT 'events', COALESCE(max(seq), 0),
          COALESCE((SELECT record_hash FROM audit_records ORDER BY seq DESC LIMIT 1),
                   repeat('0', 64))
        FROM audit_records"""
    )
    op.drop_index("audit_records_occurred_at", "audit_records")
    for column in ("correlation_id", "account", "event_type", "source", "actor"):
        op.drop_index(f"audit_records_{column}_seq", "audit_records")
    op.create_index("ix_audit_records_correlation_id", "audit_records", ["correlation_id"])
    for column in ("causation_id", "account", "offset", "partition"):
        op.drop_column("audit_records", column)
