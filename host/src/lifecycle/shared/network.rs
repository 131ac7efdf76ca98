//! The pod's network: the ready gates of its containers' HTTP servers, its servers by port, and
//! what the http layer needs of it ([`Serving`], [`PodNetwork`]).

use std::sync::Arc;

use super::PodShared;
use crate::http::{PodNetwork, Server, Serving};
use crate::runtime::Runtime;

impl PodShared {
    /// The `ready` of container slot `index`, kept up to date with its status.
    pub fn ready_gate(&self, index: usize) -> Arc<std::sync::atomic::AtomicBool> {
        self.ready_gates[index].clone()
    }

    /// Makes `server` the pod's server on `ports`.
    pub fn register_server(&self, ports: &[u16], server: &Arc<Server>) {
        let mut servers = self.servers.lock().unwrap();
        for port in ports {
            servers.insert(*port, server.clone());
        }
    }

    /// Forgets `server` (its container run ended).
    pub fn unregister_server(&self, server: &Arc<Server>) {
        self.servers
            .lock()
            .unwrap()
            .retain(|_, registered| !Arc::ptr_eq(registered, server));
    }

    /// What the HTTP server of container slot `index` needs of the pod: its ready gate, the
    /// pod's events, the pod's address and the kubelet's secret.
    pub fn serving(self: &Arc<Self>, index: usize) -> Serving {
        let pod = self.clone();
        Serving {
            ready: self.ready_gate(index),
            events: Arc::new(move |kind, reason, container, message| {
                pod.event(kind, reason, container, message)
            }),
            address: self.host.config.http_address,
            kubelet_token: self.host.kubelet_token.clone(),
        }
    }
}

/// The pod's network, as the kubelet's requests reach it.
impl PodNetwork for PodShared {
    fn runtime(&self) -> &Runtime {
        &self.host.runtime
    }

    fn address(&self) -> std::net::IpAddr {
        self.host.config.http_address
    }

    fn kubelet_token(&self) -> &str {
        &self.host.kubelet_token
    }

    fn server_on(&self, port: u16) -> Option<Arc<Server>> {
        self.servers.lock().unwrap().get(&port).cloned()
    }
}
