-- 0041 (PostgreSQL): the record state 'retired' and the intent 'retire'; as
-- SQLite's 0041_retired_state.sql, which explains them. PostgreSQL alters
-- a CHECK directly: the two constraints 0001 and 0003 declared on their
-- columns (named by PostgreSQL's rule, table_column_check) are replaced
-- with the widened lists, so no Go step runs for this version here.
ALTER TABLE keys DROP CONSTRAINT keys_state_check,
    ADD CONSTRAINT keys_state_check
        CHECK (state IN ('generating', 'pending', 'married', 'failed', 'deleted', 'lost', 'retired'));
ALTER TABLE keys DROP CONSTRAINT keys_intent_check,
    ADD CONSTRAINT keys_intent_check
        CHECK (intent IS NULL OR intent IN ('delete', 'marry', 'retire'));
