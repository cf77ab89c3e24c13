//! A canned proxy for the rooms' unit tests: its exec answers every command
//! with one output and records the commands, and its only file holds one
//! config and cannot be written.

use crate::proxy::{ExecOutput, ProxyError};
use async_trait::async_trait;

/// A proxy whose exec answers every command with `out`, and whose only
/// file holds `config`.
pub(super) struct Canned {
    pub(super) out: ExecOutput,
    pub(super) config: Vec<u8>,
    pub(super) calls: std::sync::Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl crate::proxy::ProxyExec for Canned {
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        self.calls.lock().unwrap().push(argv.to_vec());
        Ok(self.out.clone())
    }
}

#[async_trait]
impl crate::proxy::ConfigStore for Canned {
    async fn read(&self, _: &str) -> Result<Vec<u8>, ProxyError> {
        Ok(self.config.clone())
    }
    async fn write_in_place(&self, path: &str, _: &[u8]) -> Result<(), ProxyError> {
        Err(ProxyError::File {
            proxy: "canned".into(),
            action: "write",
            path: path.into(),
            reason: "read-only".into(),
        })
    }
    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        self.write_in_place(path, bytes).await
    }
    async fn remove(&self, _: &str) -> Result<(), ProxyError> {
        Ok(())
    }
}
