-- 0060: each token's profile as csrd last learned it (hsm.Profile: the
-- token's own answers and the trial rounds' findings), one row per token
-- by label and serial, replaced each time it is learned again. It is for
-- operators and audits (csrctl token probe -recorded); csrd learns the
-- profile afresh at every connection and never reads it back.
CREATE TABLE token_profiles (
    token_label  TEXT NOT NULL,
    token_serial TEXT NOT NULL,
    learned_time TEXT NOT NULL,  -- RFC 3339, UTC
    learned_by   TEXT NOT NULL,  -- 'csrd' or 'csrctl token probe'
    profile      TEXT NOT NULL CHECK (json_valid(profile)),
    PRIMARY KEY (token_label, token_serial)
);
