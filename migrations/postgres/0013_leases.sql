-- Work only one instance may do at a time: a Telegram bot's long polling, an IMAP mailbox's
-- polling, a scheduled run of a periodic job. The holder renews its lease while it works; a lease
-- that ran out, or whose holder is no longer among the instances, is free to take.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
