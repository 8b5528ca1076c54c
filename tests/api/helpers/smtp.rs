//! The fake SMTP server of the end-to-end tests: the e-mail crate's own fake
//! (`switchboard_email::testing`), so the gateway is tested against the same server as the
//! channel's SMTP sender.

pub use switchboard_email::testing::FakeSmtp;
