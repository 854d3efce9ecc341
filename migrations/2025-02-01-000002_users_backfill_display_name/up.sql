-- Phase 2 of 4: a data migration. Copies name into display_name in batches of 1,000 rows,
-- committing after each, so no transaction holds row locks on the whole table and
-- replication never sees one huge write. Runs outside a transaction (metadata.toml), which
-- is what lets the DO block COMMIT; it is safe to re-run: it only touches rows still NULL.
DO $$
DECLARE
    done BIGINT;
BEGIN
    LOOP
        UPDATE users SET display_name = name
        WHERE id IN (SELECT id FROM users WHERE display_name IS NULL LIMIT 1000);
        GET DIAGNOSTICS done = ROW_COUNT;
        EXIT WHEN done = 0;
        COMMIT;
    END LOOP;
END
$$;
