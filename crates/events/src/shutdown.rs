//! A clonable, cancel-once shutdown signal for background tasks. It only signals;
//! it never stops a task by force.

use std::sync::Arc;

use tokio::sync::watch;

/// Cancelled once; every clone sees it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        let (sender, receiver) = watch::channel(false);
        Shutdown {
            sender: Arc::new(sender),
            receiver,
        }
    }
}

impl Shutdown {
    pub fn cancel(&self) {
        self.sender.send_replace(true);
    }

    pub async fn wait(mut self) {
        let _ = self.receiver.wait_for(|cancelled| *cancelled).await;
    }
}
