-- The instant an instant send asked for (`at`), kept as asked: `fire_at` moves when a hand-off is retried, so a
-- request repeated under the send's Idempotency-Key is compared with this. Rows made before this column were compared
-- with `fire_at` until their first claim, and with nothing after it: another `at` under the key of a send already made
-- answered that send (202), and the one asked for was never scheduled. Rows no claim moved get it from `fire_at`; the
-- others keep the earlier rule.
ALTER TABLE scheduled_sends ADD COLUMN asked_at timestamptz;
UPDATE scheduled_sends SET asked_at = fire_at WHERE NOT local_time AND attempts = 0;
ALTER TABLE scheduled_sends ADD CONSTRAINT scheduled_sends_asked_at_check CHECK (NOT local_time OR asked_at IS NULL);
