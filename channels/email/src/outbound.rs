//! PLACEHOLDER — being written.
use async_trait::async_trait;
use switchboard_channel::{OutboundMessage, SendError, Sender, Sent};

use crate::SmtpSettings;

/// Sends over SMTP.
pub struct SmtpSender {
    #[allow(dead_code)]
    settings: SmtpSettings,
}

impl SmtpSender {
    /// A sender.
    pub fn new(settings: SmtpSettings) -> Result<Self, SendError> {
        Ok(Self { settings })
    }
}

#[async_trait]
impl Sender for SmtpSender {
    async fn send(&self, _message: &OutboundMessage) -> Result<Sent, SendError> {
        Err(SendError::transient("not yet"))
    }
}
