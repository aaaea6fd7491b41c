-- 0030: what a key may do besides signing, when its token could not
-- restrict it to signing and hsm.require_sign_only was false: the usage
-- the token read back ("sign, decrypt", ...). NULL for every other key,
-- which may only sign.
ALTER TABLE keys ADD COLUMN key_usage TEXT;
