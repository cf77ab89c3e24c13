//! Between route targets and addresses.
//!
//! nginx resolves a target's host name itself; HAProxy's runtime API takes
//! an address (`set server B/S addr IP port P`) and reports one. So the
//! router asks a [`Resolve`] for the addresses of a target when it routes it,
//! and for the target behind an address when it reads the routes back (a
//! resumed run knows only what HAProxy shows). The Docker backend will
//! answer from the containers' network addresses; [`StaticResolver`] answers
//! from a table and from literal addresses, for the tests and for an
//! operator whose instances have fixed addresses.

use crate::error::HaproxyError;
use async_trait::async_trait;
use rollout_core::model::InstanceId;
use rollout_core::router::Target;
use std::net::{IpAddr, SocketAddr};

/// Turns targets into addresses and back.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses (IP and port) requests for `target` go to: one for an
    /// instance, one per running instance for a service.
    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, HaproxyError>;

    /// The target a server slot at `addr` stands for.
    async fn identify(&self, addr: SocketAddr) -> Target;
}

/// A table of targets and their addresses, and literal addresses: a host
/// that is `IP:PORT` goes there, a host that is an IP goes to the default
/// port. An address in no entry reads back as an instance whose id and host
/// are that IP (with `:PORT` unless it is the default port).
#[derive(Debug, Clone)]
pub struct StaticResolver {
    port: u16,
    entries: Vec<(Target, Vec<SocketAddr>)>,
}

impl StaticResolver {
    /// Literal addresses only, `port` for a host without one.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            entries: Vec::new(),
        }
    }

    /// The same, with `target` at `addrs`.
    pub fn with(mut self, target: Target, addrs: Vec<SocketAddr>) -> Self {
        self.entries.push((target, addrs));
        self
    }
}

#[async_trait]
impl Resolve for StaticResolver {
    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, HaproxyError> {
        if let Some((_, addrs)) = self.entries.iter().find(|(t, _)| t.host() == target.host()) {
            return Ok(addrs.clone());
        }
        let host = target.host();
        if let Ok(addr) = host.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Err(HaproxyError::Resolve {
            target: host.escape_debug().to_string(),
            reason: "neither a known name nor an IP address".into(),
        })
    }

    async fn identify(&self, addr: SocketAddr) -> Target {
        if let Some((target, _)) = self.entries.iter().find(|(_, a)| a.contains(&addr)) {
            return target.clone();
        }
        let host = if addr.port() == self.port {
            addr.ip().to_string()
        } else {
            addr.to_string()
        };
        Target::instance(InstanceId::from(host.as_str()), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_and_table_addresses_both_ways() {
        let web: SocketAddr = "10.1.0.5:8000".parse().unwrap();
        let service = Target::Service { name: "app".into() };
        let resolver = StaticResolver::new(80).with(service.clone(), vec![web]);
        let one = Target::instance(InstanceId::from("127.0.0.2"), "127.0.0.2");
        assert_eq!(
            resolver.resolve(&one).await.unwrap(),
            ["127.0.0.2:80".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolver.identify("127.0.0.2:80".parse().unwrap()).await,
            one
        );
        assert_eq!(
            resolver
                .identify("127.0.0.2:81".parse().unwrap())
                .await
                .host(),
            "127.0.0.2:81"
        );
        assert_eq!(resolver.resolve(&service).await.unwrap(), [web]);
        assert_eq!(resolver.identify(web).await, service);
        let name = Target::instance(InstanceId::from("web-1"), "web-1");
        assert!(resolver.resolve(&name).await.is_err());
    }
}
