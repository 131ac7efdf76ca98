//! The pod's network: the ready gates of its containers' HTTP servers, its servers by port, and
//! what the http layer needs of it ([`Serving`], [`PodNetwork`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::PodShared;
use crate::http::{PodNetwork, Server, Serving};
use crate::runtime::Runtime;

/// The address a pod serves on, its IP: the host's ([`crate::HostConfig::http_address`]), or
/// for replica `n` of a workload whose pods listen, the `n`-th address after the host's
/// loopback address (127.0.0.1 → 127.0.0.2, …), so that every replica has its ports — as each
/// pod has an IP of its own in Kubernetes. Other addresses are this machine's alone: replicas
/// cannot have one each.
pub(crate) fn pod_address(host: IpAddr, replica: u32) -> Result<IpAddr, String> {
    if replica == 0 {
        return Ok(host);
    }
    let beyond = || {
        format!(
            "replica {replica} needs an address of its own for its ports, and wasmlet gives \
             replicas the loopback addresses after the host's only when it serves on one \
             (127.x.y.z; this host serves on {host}): run one replica, or one wasmlet per \
             replica, each with its own `--address`"
        )
    };
    match host {
        IpAddr::V4(v4) if v4.is_loopback() => {
            let next = u32::from(v4).checked_add(replica).ok_or_else(beyond)?;
            let next = Ipv4Addr::from(next);
            if next.is_loopback() && next.octets()[3] != 255 {
                Ok(IpAddr::V4(next))
            } else {
                Err(beyond())
            }
        }
        _ => Err(beyond()),
    }
}

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
            address: self.address,
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
        self.address
    }

    fn kubelet_token(&self) -> &str {
        &self.host.kubelet_token
    }

    fn server_on(&self, port: u16) -> Option<Arc<Server>> {
        self.servers.lock().unwrap().get(&port).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_get_the_loopback_addresses_after_the_hosts() {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(pod_address(localhost, 0), Ok(localhost));
        assert_eq!(pod_address(localhost, 2), Ok("127.0.0.3".parse().unwrap()));
        assert_eq!(
            pod_address("127.0.0.254".parse().unwrap(), 2),
            Ok("127.0.1.0".parse().unwrap())
        );
        // Off loopback there is one address: replicas cannot have one each.
        let public: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(pod_address(public, 0), Ok(public));
        let refused = pod_address(public, 1).unwrap_err();
        assert!(
            refused.contains("this host serves on 192.0.2.7"),
            "{refused}"
        );
        assert!(pod_address("::1".parse().unwrap(), 1).is_err());
        assert!(pod_address("127.255.255.254".parse().unwrap(), 1).is_err());
    }
}
