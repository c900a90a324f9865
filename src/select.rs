//! select: turn the operator's selectors into a filter over matches (pure).
//!
//! Selectors of different kinds AND together; a repeated selector ORs (`--state close-wait --state
//! last-ack` is either state). The grammar follows `ss` where `ss` has one: state names and groups,
//! `ADDR[/PREFIX][:PORT]` with IPv6 in brackets when a port follows.

use crate::cli::Args;
use crate::model::{unmap_ip, Match, Proto, SockState};
use crate::resolve::{Query, Targets};
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use thiserror::Error;

/// Malformed selector input. Each message is one sentence: what is wrong, and what to type.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown state '{name}': use one of {}", valid_state_names())]
    UnknownState { name: String },
    #[error("{flag} '{value}' is not an address: {why}; type e.g. 10.0.0.5, 10.0.0.0/8:443, [::1]:8080 or fe80::/10")]
    BadAddress {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("{flag} '{value}' is not a port: type a number 0-65535 or a range like 8000-8080")]
    BadPort { flag: &'static str, value: String },
    #[error("unknown protocol '{value}': use tcp, udp or unix")]
    BadProto { value: String },
    #[error("--idle '{value}' is not a duration: {why}; type e.g. 90s, 10m or 2h")]
    BadDuration { value: String, why: String },
    #[error("--fd {fd} is not a file descriptor number: type a number 0 or larger")]
    BadFd { fd: i32 },
    #[error("unix sockets have no IP addresses or ports: drop {flag} or add --proto tcp/udp")]
    UnixWithAddress { flag: &'static str },
}

/// Every word `--state` accepts, for the error message.
pub fn valid_state_names() -> String {
    let mut names: Vec<&str> = SockState::NAMED.iter().map(|s| s.name()).collect();
    names.extend(["connected", "synchronized", "all"]);
    names.join(", ")
}

/// One `--state` word: a single state, a group of states, or every state (`all`).
fn parse_state(word: &str) -> Result<Option<Vec<SockState>>, SelectError> {
    use SockState::*;
    let w = word.trim().to_ascii_lowercase();
    if let Some(s) = SockState::NAMED.iter().find(|s| s.name() == w) {
        return Ok(Some(vec![*s]));
    }
    // Groups as ss(8) describes them: connected = all but listening and closed; synchronized =
    // connected without the handshake states.
    let connected: Vec<SockState> = SockState::NAMED
        .into_iter()
        .filter(|s| !matches!(s, Listening | Closed))
        .collect();
    match w.as_str() {
        "all" => Ok(None),
        "connected" => Ok(Some(connected)),
        "synchronized" => Ok(Some(
            connected
                .into_iter()
                .filter(|s| !matches!(s, SynSent | SynRecv))
                .collect(),
        )),
        _ => Err(SelectError::UnknownState {
            name: word.to_string(),
        }),
    }
}

/// `ADDR[/PREFIX][:PORT]`: an address or network, optionally with a port. `*` is any address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrFilter {
    /// `None` for `*` (any address, port only).
    pub net: Option<IpNet>,
    pub port: Option<u16>,
}

impl AddrFilter {
    pub fn parse(flag: &'static str, text: &str) -> Result<AddrFilter, SelectError> {
        let bad = |why: &str| SelectError::BadAddress {
            flag,
            value: text.to_string(),
            why: why.to_string(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        // Split into the address part and an optional port.
        let (addr, port) = if let Some(rest) = t.strip_prefix('[') {
            let close = rest.find(']').ok_or_else(|| bad("'[' without ']'"))?;
            let after = &rest[close + 1..];
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("only ':PORT' may follow ']'"))?,
                ),
            };
            (&rest[..close], port)
        } else {
            match t.matches(':').count() {
                0 => (t, None),
                // IPv4 (or `*`) with a port.
                1 => {
                    let (a, p) = t.split_once(':').unwrap();
                    (a, Some(p))
                }
                // A bare IPv6 address: no port without brackets.
                _ => (t, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("'{p}' is not a port number 0-65535")))?,
            ),
        };
        let net = if addr == "*" {
            None
        } else if addr.contains('/') {
            let n: IpNet = addr
                .parse()
                .map_err(|_| bad("the part before ':' is not ADDRESS/PREFIX"))?;
            Some(n.trunc())
        } else {
            let ip: IpAddr = addr.parse().map_err(|_| {
                bad(
                    if addr.chars().any(|c| c.is_ascii_alphabetic() && c > 'f') {
                        "host names are not resolved"
                    } else {
                        "it is not an IPv4 or IPv6 address"
                    },
                )
            })?;
            Some(IpNet::from(ip))
        };
        if net.is_none() && port.is_none() {
            return Err(bad("'*' needs a port, as in *:443"));
        }
        Ok(AddrFilter {
            net: net.map(unmap_net),
            port,
        })
    }

    pub fn matches(&self, addr: &SocketAddr) -> bool {
        if let Some(p) = self.port {
            if addr.port() != p {
                return false;
            }
        }
        match &self.net {
            None => true,
            // Compare unmapped forms: an IPv4 filter matches `::ffff:a.b.c.d` peers of dual-stack
            // sockets, which is how a Java server's IPv4 clients appear.
            Some(net) => net.contains(&unmap_ip(addr.ip())),
        }
    }
}

/// `::ffff:a.b.c.d/N` (N >= 96) is the IPv4 network it maps.
fn unmap_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap()),
            None => net,
        },
        _ => net,
    }
}

/// `N` or `N-M` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn parse(flag: &'static str, text: &str) -> Result<PortRange, SelectError> {
        let bad = || SelectError::BadPort {
            flag,
            value: text.to_string(),
        };
        let num = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
        let (lo, hi) = match text.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(text)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// Which kinds of fd the selection looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kinds {
    /// Only sockets of these protocols.
    Protos(Vec<Proto>),
    /// Any fd at all (only `--fd`/`--inode` were given): non-sockets too.
    Any,
}

/// The operator's selectors, parsed. Empty lists select everything for that kind of selector.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// `None`: any state.
    pub states: Option<Vec<SockState>>,
    /// `--state listening` was typed literally: the operator accepts acting on listeners.
    pub listening_named: bool,
    pub peers: Vec<AddrFilter>,
    pub locals: Vec<AddrFilter>,
    pub peer_ports: Vec<PortRange>,
    pub local_ports: Vec<PortRange>,
    pub fds: Vec<i32>,
    pub inodes: Vec<u64>,
    pub kinds: Kinds,
    pub idle: Option<Duration>,
    pub orphans: bool,
    pub netns: Option<String>,
}

/// States `--orphans` selects when no `--state` is named.
pub const ORPHAN_STATES: [SockState; 4] = [
    SockState::FinWait1,
    SockState::FinWait2,
    SockState::Closing,
    SockState::LastAck,
];

impl Selection {
    pub fn from_args(a: &Args) -> Result<Selection, SelectError> {
        let mut states: Option<Vec<SockState>> = if a.state.is_empty() {
            None
        } else {
            Some(Vec::new())
        };
        let mut any_state = false;
        // `--state close-wait,last-ack` is accepted too, as a shorthand for repeating the flag.
        for word in a.state.iter().flat_map(|w| w.split(',')) {
            match parse_state(word)? {
                None => any_state = true,
                Some(list) => {
                    let v = states.as_mut().unwrap();
                    for s in list {
                        if !v.contains(&s) {
                            v.push(s);
                        }
                    }
                }
            }
        }
        if any_state {
            states = None;
        }
        if a.orphans && a.state.is_empty() {
            // Orphans worth relief hold queues; TIME-WAIT minisockets and request sockets hold
            // none and vanish by themselves.
            states = Some(ORPHAN_STATES.to_vec());
        }
        if let Some(v) = states.as_mut() {
            v.sort();
        }
        let listening_named = a
            .state
            .iter()
            .flat_map(|w| w.split(','))
            .any(|w| w.trim().eq_ignore_ascii_case("listening"));

        let peers = a
            .peer
            .iter()
            .map(|p| AddrFilter::parse("--peer", p))
            .collect::<Result<Vec<_>, _>>()?;
        let locals = a
            .local
            .iter()
            .map(|p| AddrFilter::parse("--local", p))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_ports = a
            .peer_port
            .iter()
            .map(|p| PortRange::parse("--peer-port", p))
            .collect::<Result<Vec<_>, _>>()?;
        let local_ports = a
            .local_port
            .iter()
            .map(|p| PortRange::parse("--local-port", p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(&fd) = a.fd.iter().find(|&&fd| fd < 0) {
            return Err(SelectError::BadFd { fd });
        }
        let idle =
            match &a.idle {
                None => None,
                Some(t) => Some(humantime::parse_duration(t.trim()).map_err(|e| {
                    SelectError::BadDuration {
                        value: t.clone(),
                        why: e.to_string(),
                    }
                })?),
            };

        let mut protos = Vec::new();
        for p in &a.proto {
            let proto = match p.trim().to_ascii_lowercase().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "unix" => Proto::Unix,
                _ => return Err(SelectError::BadProto { value: p.clone() }),
            };
            if !protos.contains(&proto) {
                protos.push(proto);
            }
        }
        protos.sort();
        let socket_selectors = !a.state.is_empty()
            || !peers.is_empty()
            || !locals.is_empty()
            || !peer_ports.is_empty()
            || !local_ports.is_empty()
            || idle.is_some()
            || a.orphans;
        let kinds = if !protos.is_empty() {
            Kinds::Protos(protos)
        } else if !socket_selectors && (!a.fd.is_empty() || !a.inode.is_empty()) {
            Kinds::Any
        } else {
            Kinds::Protos(vec![Proto::Tcp])
        };
        if kinds == Kinds::Protos(vec![Proto::Unix]) {
            let flag = [
                ("--peer", !peers.is_empty()),
                ("--local", !locals.is_empty()),
                ("--peer-port", !peer_ports.is_empty()),
                ("--local-port", !local_ports.is_empty()),
            ]
            .into_iter()
            .find(|(_, given)| *given);
            if let Some((flag, _)) = flag {
                return Err(SelectError::UnixWithAddress { flag });
            }
        }

        Ok(Selection {
            states,
            listening_named,
            peers,
            locals,
            peer_ports,
            local_ports,
            fds: a.fd.clone(),
            inodes: a.inode.clone(),
            kinds,
            idle,
            orphans: a.orphans,
            netns: a.netns.clone(),
        })
    }

    /// True when the operator named no selector at all (acting on everything is refused).
    pub fn is_empty(&self) -> bool {
        self.states.is_none()
            && self.peers.is_empty()
            && self.locals.is_empty()
            && self.peer_ports.is_empty()
            && self.local_ports.is_empty()
            && self.fds.is_empty()
            && self.inodes.is_empty()
            && self.idle.is_none()
            && !self.orphans
    }

    /// Protocols whose tables the resolver must read.
    pub fn protos(&self) -> Vec<Proto> {
        match &self.kinds {
            Kinds::Protos(p) => p.clone(),
            Kinds::Any => vec![Proto::Tcp, Proto::Udp, Proto::Unix, Proto::Other],
        }
    }

    /// Kernel state filter (`idiag_states` bits): the selected states, or every state.
    pub fn state_mask(&self) -> u32 {
        match &self.states {
            None => ALL_STATES,
            Some(list) => list.iter().fold(0, |m, s| m | s.kernel_bit()),
        }
    }

    /// What the resolver must look up for this selection in `targets`. The resolver filters by
    /// proto and state in the kernel; [`Selection::matches`] applies everything else afterwards.
    pub fn query(&self, targets: Targets) -> Query {
        Query {
            targets,
            protos: self.protos(),
            state_mask: self.state_mask(),
            include_fds: self.fds.clone(),
            orphans: self.orphans,
            netns: self.netns.clone(),
        }
    }

    pub fn matches(&self, m: &Match) -> bool {
        // --orphans selects sockets no fd owns, and only those: `--orphans --action destroy` must
        // never reach a socket a program still holds.
        if self.orphans && m.fd.is_some() {
            return false;
        }
        if !self.fds.is_empty() && !m.fd.is_some_and(|fd| self.fds.contains(&fd)) {
            return false;
        }
        if !self.inodes.is_empty() && !m.inode().is_some_and(|i| self.inodes.contains(&i)) {
            return false;
        }
        let Some(s) = &m.socket else {
            // Not a socket: only an explicit --fd over any kind of fd selects it.
            return self.kinds == Kinds::Any && !self.fds.is_empty();
        };
        if let Kinds::Protos(p) = &self.kinds {
            if !p.contains(&s.proto) {
                return false;
            }
        }
        if let Some(states) = &self.states {
            if !states.contains(&s.state) {
                return false;
            }
        }
        if !self.peers.is_empty()
            && !s
                .peer
                .is_some_and(|a| self.peers.iter().any(|f| f.matches(&a)))
        {
            return false;
        }
        if !self.locals.is_empty()
            && !s
                .local
                .is_some_and(|a| self.locals.iter().any(|f| f.matches(&a)))
        {
            return false;
        }
        if !self.peer_ports.is_empty()
            && !s
                .peer
                .is_some_and(|a| self.peer_ports.iter().any(|r| r.contains(a.port())))
        {
            return false;
        }
        if !self.local_ports.is_empty()
            && !s
                .local
                .is_some_and(|a| self.local_ports.iter().any(|r| r.contains(a.port())))
        {
            return false;
        }
        if let Some(idle) = self.idle {
            // Unknown idle time (no tcp_info) never counts as idle: acting on a guess is unsafe.
            if s.idle_ms.is_none_or(|ms| ms < idle.as_millis() as u64) {
                return false;
            }
        }
        true
    }
}

/// No state filter: the resolver's "every state" mask.
pub const ALL_STATES: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SocketEntry;
    use clap::Parser;

    fn sel(args: &[&str]) -> Result<Selection, SelectError> {
        let mut v = vec!["fdclose", "--pid", "1"];
        v.extend_from_slice(args);
        Selection::from_args(&Args::try_parse_from(v).unwrap())
    }

    fn sock(state: SockState, local: &str, peer: &str) -> Match {
        let mut s = SocketEntry::closed_fd(77, Proto::Tcp);
        s.state = state;
        s.local = Some(local.parse().unwrap());
        s.peer = Some(peer.parse().unwrap());
        Match {
            pid: 10,
            comm: "java".into(),
            fd: Some(5),
            ino: 77,
            target: "socket:[77]".into(),
            socket: Some(s),
            epoll: vec![],
        }
    }

    fn with_proto(mut m: Match, p: Proto) -> Match {
        m.socket.as_mut().unwrap().proto = p;
        m
    }

    fn file(fd: i32) -> Match {
        Match {
            pid: 10,
            comm: "java".into(),
            fd: Some(fd),
            ino: 3,
            target: "/tmp/x".into(),
            socket: None,
            epoll: vec![],
        }
    }

    #[test]
    fn state_names_and_groups() {
        let s = sel(&["--state", "close-wait", "--state", "LAST-ACK"]).unwrap();
        assert_eq!(
            s.states,
            Some(vec![SockState::CloseWait, SockState::LastAck])
        );
        assert_eq!(s.state_mask(), (1 << 8) | (1 << 9));
        assert!(!s.listening_named);

        let c = sel(&["--state", "connected"]).unwrap().states.unwrap();
        assert!(!c.contains(&SockState::Listening) && !c.contains(&SockState::Closed));
        assert!(c.contains(&SockState::TimeWait) && c.contains(&SockState::SynSent));
        assert_eq!(c.len(), 9);

        let y = sel(&["--state", "synchronized"]).unwrap().states.unwrap();
        assert!(!y.contains(&SockState::SynSent) && !y.contains(&SockState::SynRecv));
        assert!(y.contains(&SockState::CloseWait));
        assert_eq!(y.len(), 7);

        let comma = sel(&["--state", "close-wait,last-ack"]).unwrap();
        assert_eq!(comma.states, s.states);
        assert!(
            sel(&["--state", "established,listening"])
                .unwrap()
                .listening_named
        );
        assert!(sel(&["--state", "close-wait,"]).is_err());

        let a = sel(&["--state", "all", "--state", "established"]).unwrap();
        assert_eq!(a.states, None);
        assert_eq!(a.state_mask(), ALL_STATES);
        assert!(sel(&["--state", "listening"]).unwrap().listening_named);
        assert!(!sel(&["--state", "all"]).unwrap().listening_named);
    }

    #[test]
    fn unknown_state_lists_valid_names() {
        let e = sel(&["--state", "close_wait"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("unknown state 'close_wait': use one of established,"));
        for n in [
            "close-wait",
            "fin-wait-1",
            "closed",
            "connected",
            "synchronized",
            "all",
        ] {
            assert!(msg.contains(n), "{msg}");
        }
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn address_grammar() {
        let p = |t| AddrFilter::parse("--peer", t);
        assert_eq!(
            p("10.0.0.5").unwrap(),
            AddrFilter {
                net: Some("10.0.0.5/32".parse().unwrap()),
                port: None
            }
        );
        assert_eq!(
            p("10.0.0.0/8:443").unwrap(),
            AddrFilter {
                net: Some("10.0.0.0/8".parse().unwrap()),
                port: Some(443)
            }
        );
        // Host bits are dropped, as ip(8) does for a route.
        assert_eq!(
            p("10.1.2.3/8").unwrap().net,
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            p("[::1]:8080").unwrap(),
            AddrFilter {
                net: Some("::1/128".parse().unwrap()),
                port: Some(8080)
            }
        );
        assert_eq!(
            p("[fe80::/10]").unwrap(),
            AddrFilter {
                net: Some("fe80::/10".parse().unwrap()),
                port: None
            }
        );
        assert_eq!(p("::1").unwrap().port, None);
        assert_eq!(p("fe80::1:2").unwrap().port, None);
        assert_eq!(
            p("*:443").unwrap(),
            AddrFilter {
                net: None,
                port: Some(443)
            }
        );
        // A mapped filter is the IPv4 network it maps.
        assert_eq!(
            p("[::ffff:10.0.0.0/104]").unwrap().net,
            Some("10.0.0.0/8".parse().unwrap())
        );
    }

    #[test]
    fn malformed_addresses_say_what_to_type() {
        for bad in [
            "",
            "10.0.0.256",
            "10.0.0.5:99999",
            "10.0.0.5:http",
            "[::1",
            "[::1]8080",
            "10.0.0.0/33",
            "db.example.com",
            "*",
            "::1:8080:",
        ] {
            let e = AddrFilter::parse("--peer", bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("type e.g."), "{bad}: {msg}");
            assert!(!msg.contains('\n'));
        }
        assert!(AddrFilter::parse("--peer", "db.example.com")
            .unwrap_err()
            .to_string()
            .contains("host names are not resolved"));
    }

    #[test]
    fn ipv4_filter_matches_mapped_peers() {
        let f = AddrFilter::parse("--peer", "10.0.0.5").unwrap();
        assert!(f.matches(&"10.0.0.5:4000".parse().unwrap()));
        assert!(f.matches(&"[::ffff:10.0.0.5]:4000".parse().unwrap()));
        assert!(!f.matches(&"10.0.0.6:4000".parse().unwrap()));
        assert!(!f.matches(&"[::1]:4000".parse().unwrap()));
        let net = AddrFilter::parse("--peer", "10.0.0.0/8:443").unwrap();
        assert!(net.matches(&"[::ffff:10.9.9.9]:443".parse().unwrap()));
        assert!(!net.matches(&"[::ffff:10.9.9.9]:444".parse().unwrap()));
        assert!(!net.matches(&"11.0.0.1:443".parse().unwrap()));
        let v6 = AddrFilter::parse("--peer", "[fe80::/10]").unwrap();
        assert!(v6.matches(&"[fe80::1]:1".parse().unwrap()));
        assert!(!v6.matches(&"10.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("--peer-port", "80").unwrap(),
            PortRange { lo: 80, hi: 80 }
        );
        let r = PortRange::parse("--peer-port", "8000-8080").unwrap();
        assert!(r.contains(8000) && r.contains(8080) && !r.contains(8081));
        for bad in ["", "x", "80-", "9-8", "70000", "-1"] {
            let e = PortRange::parse("--local-port", bad).unwrap_err();
            assert!(e.to_string().starts_with("--local-port '"), "{e}");
        }
    }

    #[test]
    fn selectors_and_together_and_repeats_or() {
        let s = sel(&[
            "--state",
            "close-wait",
            "--peer",
            "10.0.0.5",
            "--peer",
            "10.0.0.6",
        ])
        .unwrap();
        assert!(s.matches(&sock(SockState::CloseWait, "10.0.0.1:80", "10.0.0.5:3000")));
        assert!(s.matches(&sock(
            SockState::CloseWait,
            "[::ffff:10.0.0.1]:80",
            "[::ffff:10.0.0.6]:3000"
        )));
        assert!(!s.matches(&sock(
            SockState::Established,
            "10.0.0.1:80",
            "10.0.0.5:3000"
        )));
        assert!(!s.matches(&sock(SockState::CloseWait, "10.0.0.1:80", "10.0.0.7:3000")));

        let p = sel(&["--local-port", "80", "--peer-port", "3000-3999"]).unwrap();
        assert!(p.matches(&sock(
            SockState::Established,
            "10.0.0.1:80",
            "10.0.0.5:3500"
        )));
        assert!(!p.matches(&sock(
            SockState::Established,
            "10.0.0.1:81",
            "10.0.0.5:3500"
        )));
        assert!(!p.matches(&sock(
            SockState::Established,
            "10.0.0.1:80",
            "10.0.0.5:4000"
        )));

        let l = sel(&["--local", "[::1]:80"]).unwrap();
        assert!(l.matches(&sock(SockState::Listening, "[::1]:80", "[::]:0")));
        assert!(!l.matches(&sock(SockState::Listening, "127.0.0.1:80", "0.0.0.0:0")));
    }

    #[test]
    fn proto_defaults_to_tcp_except_for_fd_and_inode_alone() {
        let s = sel(&["--state", "established"]).unwrap();
        assert_eq!(s.kinds, Kinds::Protos(vec![Proto::Tcp]));
        let est = sock(SockState::Established, "127.0.0.1:1", "127.0.0.1:2");
        assert!(s.matches(&est));
        assert!(!s.matches(&with_proto(est.clone(), Proto::Udp)));

        let u = sel(&["--proto", "udp", "--proto", "unix"]).unwrap();
        assert_eq!(u.protos(), vec![Proto::Udp, Proto::Unix]);
        assert!(u.matches(&with_proto(est.clone(), Proto::Udp)));
        assert!(!u.matches(&est));

        let f = sel(&["--fd", "5"]).unwrap();
        assert_eq!(f.kinds, Kinds::Any);
        assert!(f.matches(&with_proto(est.clone(), Proto::Unix)));
        assert!(f.matches(&file(5)));
        assert!(!f.matches(&file(6)));
        // A socket selector next to --fd limits it to TCP sockets again.
        let fs = sel(&["--fd", "5", "--state", "established"]).unwrap();
        assert!(!fs.matches(&file(5)));
        assert!(fs.matches(&est));

        let i = sel(&["--inode", "77"]).unwrap();
        assert!(i.matches(&with_proto(est.clone(), Proto::Udp)));
        assert!(!i.matches(&file(5)));

        assert_eq!(
            sel(&["--proto", "sctp"]).unwrap_err(),
            SelectError::BadProto {
                value: "sctp".into()
            }
        );
        assert!(matches!(
            sel(&["--proto", "unix", "--peer", "10.0.0.1"]).unwrap_err(),
            SelectError::UnixWithAddress { flag: "--peer" }
        ));
        assert!(matches!(
            sel(&["--fd=-3"]).unwrap_err(),
            SelectError::BadFd { fd: -3 }
        ));
    }

    #[test]
    fn idle_needs_a_known_idle_time() {
        let s = sel(&["--idle", "90s"]).unwrap();
        assert_eq!(s.idle, Some(Duration::from_secs(90)));
        let mut m = sock(SockState::CloseWait, "127.0.0.1:1", "127.0.0.1:2");
        assert!(!s.matches(&m));
        m.socket.as_mut().unwrap().idle_ms = Some(89_999);
        assert!(!s.matches(&m));
        m.socket.as_mut().unwrap().idle_ms = Some(90_000);
        assert!(s.matches(&m));
        let e = sel(&["--idle", "ten minutes"]).unwrap_err().to_string();
        assert!(
            e.starts_with("--idle 'ten minutes' is not a duration"),
            "{e}"
        );
    }

    #[test]
    fn orphans_selects_only_sockets_no_fd_owns() {
        let s = sel(&["--orphans", "--state", "fin-wait-1"]).unwrap();
        let mut owned = sock(SockState::FinWait1, "127.0.0.1:80", "127.0.0.1:5000");
        assert!(!s.matches(&owned));
        owned.fd = None;
        owned.pid = 0;
        assert!(s.matches(&owned));
    }

    #[test]
    fn emptiness_is_what_acting_refuses() {
        assert!(sel(&[]).unwrap().is_empty());
        assert!(sel(&["--state", "all"]).unwrap().is_empty());
        assert!(!sel(&["--fd", "3"]).unwrap().is_empty());
        assert!(!sel(&["--idle", "1m"]).unwrap().is_empty());
    }
}
