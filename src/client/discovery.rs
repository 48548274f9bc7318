//! Servers found by name: an endpoint that names its servers instead of
//! giving an address is resolved to every address it stands for, one link
//! each, and resolved again periodically, links coming and going with the
//! answer (see `Core::set_addresses`).
//!
//! Names understood by the built-in resolvers:
//! - `tcp://HOST:PORT`, where HOST is not an IP address: every address of
//!   HOST (`/etc/hosts`, A and AAAA records), each at PORT;
//! - `srv://NAME` (with the `dns` feature, `DnsResolver`): every SRV
//!   record of NAME (for example
//!   `srv://_zrpc._tcp.calc.default.svc.cluster.local`), each target's
//!   addresses at the record's port.
//!
//! The default is `DnsResolver::system` with the `dns` feature (the
//! command line has it), else [`SystemResolver`]. Another [`Resolver`] (a
//! static list, a watched file, a registry) takes whatever names it likes.

use super::reader::Reader;
use crate::error::Error;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Default time between two resolutions of a name.
pub const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(10);

/// Turns a name into the endpoints of its servers.
///
/// ```
/// use zerorpc::{Error, Resolver};
///
/// /// Two fixed replicas behind one name.
/// struct Pair;
///
/// #[async_trait::async_trait]
/// impl Resolver for Pair {
///     async fn resolve(&self, _name: &str) -> Result<Vec<String>, Error> {
///         Ok(vec!["tcp://127.0.0.1:4242".into(), "tcp://127.0.0.1:4243".into()])
///     }
/// }
/// # let _ = zerorpc::Client::builder().resolver(Pair).connect("pair://calc");
/// ```
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// The endpoints (`tcp://10.1.2.3:4242`, …) `name` stands for now. An
    /// error keeps the last answer in use (and is logged).
    async fn resolve(&self, name: &str) -> Result<Vec<String>, Error>;

    /// Refuse, when the client starts, a name this resolver can never
    /// resolve (a typo in a scheme, a missing port).
    fn check(&self, name: &str) -> Result<(), Error> {
        let _ = name;
        Ok(())
    }
}

/// The system's resolver (getaddrinfo: `/etc/hosts`, then A and AAAA
/// records) for `tcp://HOST:PORT`. No SRV: that takes `DnsResolver` (the
/// `dns` feature).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, name: &str) -> Result<Vec<String>, Error> {
        let (host, port) = match parse_dns_name(name)? {
            DnsName::Host(host, port) => (host, port),
            DnsName::Srv(srv) => return Err(srv_needs_dns(srv)),
        };
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::transport(format!("cannot resolve {host}"), e))?;
        let all: BTreeSet<String> = found.map(|a| tcp_endpoint(a.ip(), port)).collect();
        Ok(all.into_iter().collect())
    }

    fn check(&self, name: &str) -> Result<(), Error> {
        match parse_dns_name(name)? {
            DnsName::Host(..) => Ok(()),
            DnsName::Srv(srv) => Err(srv_needs_dns(srv)),
        }
    }
}

fn srv_needs_dns(srv: &str) -> Error {
    Error::Config(format!(
        "srv://{srv}: SRV names need zerorpc's `dns` feature (DnsResolver)"
    ))
}

/// The resolver of a client that was given none.
pub(super) fn default_resolver() -> Result<Arc<dyn Resolver>, Error> {
    #[cfg(feature = "dns")]
    return Ok(Arc::new(DnsResolver::system()?));
    #[cfg(not(feature = "dns"))]
    Ok(Arc::new(SystemResolver))
}

#[cfg(feature = "dns")]
pub use dns::DnsResolver;

/// DNS proper, with hickory-resolver.
#[cfg(feature = "dns")]
mod dns {
    use super::*;
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::TokioResolver;

    /// DNS (hickory-resolver): A and AAAA records for `tcp://HOST:PORT`, SRV
    /// records for `srv://NAME` (see the module docs), with `/etc/hosts`
    /// first; a chosen name server if need be.
    pub struct DnsResolver {
        dns: TokioResolver,
    }

    impl DnsResolver {
        /// The system's name servers and search domains (`/etc/resolv.conf`)
        /// and `/etc/hosts`.
        pub fn system() -> Result<Self, Error> {
            let builder = TokioResolver::builder_tokio().map_err(|e| {
                Error::Config(format!("cannot read the system's DNS configuration: {e}"))
            })?;
            Self::finish(builder)
        }

        /// One name server at `addr` (UDP, then TCP), and `/etc/hosts`.
        pub fn with_nameserver(addr: SocketAddr) -> Result<Self, Error> {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let config = ResolverConfig::from_name_servers(vec![server]);
            Self::finish(TokioResolver::builder_with_config(
                config,
                TokioRuntimeProvider::default(),
            ))
        }

        fn finish(
            mut builder: hickory_resolver::ResolverBuilder<TokioRuntimeProvider>,
        ) -> Result<Self, Error> {
            let opts = builder.options_mut();
            // A name is resolved again every few seconds: a lost answer is
            // retried then; waiting longer now only delays the others.
            opts.timeout = Duration::from_secs(2);
            opts.attempts = 1;
            let dns = builder
                .build()
                .map_err(|e| Error::Config(format!("cannot set up DNS: {e}")))?;
            Ok(DnsResolver { dns })
        }

        async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, Error> {
            let found = self
                .dns
                .lookup_ip(host)
                .await
                .map_err(|e| Error::transport(format!("cannot resolve {host}"), e))?;
            Ok(found.iter().collect())
        }
    }

    #[async_trait::async_trait]
    impl Resolver for DnsResolver {
        async fn resolve(&self, name: &str) -> Result<Vec<String>, Error> {
            let mut out = BTreeSet::new();
            match parse_dns_name(name)? {
                DnsName::Host(host, port) => {
                    for ip in self.addresses(host).await? {
                        out.insert(tcp_endpoint(ip, port));
                    }
                }
                DnsName::Srv(srv) => {
                    let found =
                        self.dns.srv_lookup(srv).await.map_err(|e| {
                            Error::transport(format!("cannot resolve SRV {srv}"), e)
                        })?;
                    let targets: Vec<(String, u16)> = found
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::SRV(srv) => Some((srv.target.to_utf8(), srv.port)),
                            _ => None,
                        })
                        .collect();
                    for (target, port) in targets {
                        // One target that does not resolve leaves the others.
                        match self.addresses(&target).await {
                            Ok(ips) => out.extend(ips.into_iter().map(|ip| tcp_endpoint(ip, port))),
                            Err(e) => {
                                let error = crate::error::with_causes(&e);
                                tracing::warn!(name, error, "an SRV target does not resolve")
                            }
                        }
                    }
                }
            }
            Ok(out.into_iter().collect())
        }

        fn check(&self, name: &str) -> Result<(), Error> {
            parse_dns_name(name).map(|_| ())
        }
    }
}

/// What a name given to a built-in resolver asks for.
enum DnsName<'a> {
    Host(&'a str, u16),
    Srv(&'a str),
}

fn parse_dns_name(name: &str) -> Result<DnsName<'_>, Error> {
    if let Some(srv) = name.strip_prefix("srv://") {
        if srv.is_empty() || srv.contains(['/', ':']) {
            return Err(Error::Config(format!(
                "invalid SRV name {name:?} (srv://_service._tcp.example.com)"
            )));
        }
        return Ok(DnsName::Srv(srv));
    }
    let bad = || {
        Error::Config(format!(
            "{name:?} is neither an address nor a name (tcp://HOST:PORT or srv://NAME)"
        ))
    };
    let rest = name.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    if !is_host_name(host) {
        return Err(bad());
    }
    Ok(DnsName::Host(host, port))
}

/// A DNS host name: dot-separated labels of letters, digits, `-` and `_`
/// (an unclosed `[::1`, a stray colon or a space is none, and would only
/// be looked up in vain until a call's timeout).
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `tcp://ip:port`, IPv6 in brackets.
fn tcp_endpoint(ip: IpAddr, port: u16) -> String {
    format!("tcp://{}", SocketAddr::new(ip, port))
}

/// Is `endpoint` a name to resolve, rather than an address to connect to
/// as it is? (An address: `ipc://…`, `inproc://…`, or `tcp://` with an IP
/// address or `*`.)
pub(super) fn is_name(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return !(endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://"));
    };
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !(host == "*" || host.parse::<IpAddr>().is_ok())
}

/// Resolve `names` now and every `every`, handing each answer to the
/// client's table, until the client is gone or closed.
pub(super) async fn run(
    reader: Weak<Reader>,
    resolver: Arc<dyn Resolver>,
    names: Vec<String>,
    every: Duration,
) {
    // The last failure of each name, logged when it changes.
    let mut failing: Vec<Option<String>> = vec![None; names.len()];
    loop {
        for (origin, name) in names.iter().enumerate() {
            let answer = resolver.resolve(name).await;
            let Some(reader) = reader.upgrade() else {
                return;
            };
            match answer {
                Ok(endpoints) => {
                    if failing[origin].take().is_some() {
                        tracing::info!(name, "name resolves again");
                    }
                    if endpoints.is_empty() {
                        tracing::warn!(name, "name stands for no server now");
                    }
                    let mut table = reader.lock();
                    if table.is_closed() {
                        return;
                    }
                    table.set_addresses(origin, &endpoints);
                }
                Err(e) => {
                    let e = crate::error::with_causes(&e);
                    if failing[origin].as_ref() != Some(&e) {
                        tracing::warn!(name, error = %e, "cannot resolve; keeping its last addresses");
                        failing[origin] = Some(e);
                    }
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_told_apart() {
        assert!(is_name("tcp://calc.svc:4242"));
        assert!(is_name("tcp://localhost:4242"));
        assert!(is_name("srv://_zrpc._tcp.calc"));
        assert!(is_name("consul://calc"));
        assert!(!is_name("tcp://127.0.0.1:4242"));
        assert!(!is_name("tcp://[::1]:4242"));
        assert!(!is_name("tcp://*:4242"));
        assert!(!is_name("ipc:///tmp/calc.sock"));
    }

    #[tokio::test]
    async fn the_system_resolver_reads_etc_hosts_and_refuses_srv() {
        let found = SystemResolver
            .resolve("tcp://localhost:4242")
            .await
            .unwrap();
        assert!(
            found.contains(&"tcp://127.0.0.1:4242".to_string()),
            "{found:?}"
        );
        let e = SystemResolver.check("srv://_zrpc._tcp.calc").unwrap_err();
        assert!(e.to_string().contains("`dns` feature"), "{e}");
    }

    #[test]
    fn dns_names_parse_or_say_how_to_write_them() {
        assert!(matches!(
            parse_dns_name("tcp://calc:4242"),
            Ok(DnsName::Host("calc", 4242))
        ));
        assert!(matches!(
            parse_dns_name("srv://_zrpc._tcp.calc"),
            Ok(DnsName::Srv("_zrpc._tcp.calc"))
        ));
        for bad in [
            "tcp://calc",
            "tcp://:1",
            "srv://",
            "consul://calc",
            // An unclosed IPv6 literal was looked up as a name until the
            // call timed out.
            "tcp://[::1",
            "tcp://[::1:42",
            "tcp://a b:42",
            "tcp://calc..svc:42",
        ] {
            let e = parse_dns_name(bad).err().unwrap().to_string();
            assert!(e.contains(bad) || e.contains("srv://"), "{bad}: {e}");
        }
        assert_eq!(
            tcp_endpoint("::1".parse().unwrap(), 7),
            "tcp://[::1]:7".to_string()
        );
    }
}
