-- The CSRF synchronizer token is derived from the session token (see
-- CsrfToken::of_session) and no longer kept at rest. Sessions written
-- before keep working: their pages get the derived token on their next
-- login or from GET /user/csrf.
ALTER TABLE tessera_sessions DROP COLUMN csrf_token;
