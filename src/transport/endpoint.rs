//! Endpoints as users write them, turned into what the socket layer takes.

use crate::error::Error;

/// Normalise a user endpoint and check it parses.
pub(crate) fn normalize(endpoint: &str) -> Result<String, Error> {
    let ep = match endpoint.strip_prefix("tcp://*:") {
        Some(port) => format!("tcp://0.0.0.0:{port}"),
        None => endpoint.to_string(),
    };
    ep.parse::<zerorpc_zeromq::Endpoint>()
        .map_err(|e| Error::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_host_is_rewritten() {
        assert_eq!(normalize("tcp://*:4242").unwrap(), "tcp://0.0.0.0:4242");
        assert_eq!(normalize("tcp://127.0.0.1:1").unwrap(), "tcp://127.0.0.1:1");
        assert!(normalize("nonsense").is_err());
        // What discovery produces for an IPv6 address.
        assert_eq!(normalize("tcp://[::1]:7").unwrap(), "tcp://[::1]:7");
    }
}
