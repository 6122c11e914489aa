//! Bedrock clients spread over several HTTP/2 connections.
//!
//! Every model stream is an HTTP/2 stream, and an SDK client keeps a single connection per
//! endpoint: once the server's limit of concurrent streams on it is reached, the next stream
//! waits for one to end instead of opening a second connection. A busy agent would stall its
//! callers there, so the provider keeps a list of clients, each with its own HTTP client (and
//! so its own connection), and gives every new stream the least busy client that has room,
//! adding a client when none has.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_bedrockruntime::{Client, Config};
use aws_smithy_http_client::tls::{self, TlsContext, rustls_provider::CryptoMode};

/// One client and the streams open on its connection.
struct Connection {
    client: Client,
    streams: AtomicU32,
}

pub struct Connections {
    config: Config,
    /// Extra trust roots for a private endpoint, shared by every connection.
    tls: Option<TlsContext>,
    streams_per_connection: u32,
    open: Mutex<Vec<Arc<Connection>>>,
}

/// A stream's place on a connection, given back when the stream is dropped.
pub struct Lease {
    connection: Arc<Connection>,
}

impl Lease {
    pub fn client(&self) -> &Client {
        &self.connection.client
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.connection.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub fn new(config: Config, tls: Option<TlsContext>, streams_per_connection: u32) -> Self {
        Self {
            config,
            tls,
            streams_per_connection: streams_per_connection.max(1),
            open: Mutex::new(Vec::new()),
        }
    }

    /// A client for one more stream.
    pub fn lease(&self) -> Lease {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let least_busy = open
            .iter()
            .map(|c| (c.streams.load(Ordering::Relaxed), c))
            .filter(|(streams, _)| *streams < self.streams_per_connection)
            .min_by_key(|(streams, _)| *streams)
            .map(|(_, c)| c.clone());
        let connection = match least_busy {
            Some(connection) => connection,
            None => {
                let connection = Arc::new(Connection {
                    client: self.client(),
                    streams: AtomicU32::new(0),
                });
                open.push(connection.clone());
                connection
            }
        };
        connection.streams.fetch_add(1, Ordering::Relaxed);
        Lease { connection }
    }

    /// How many connections have been set up.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A client with an HTTP client of its own: SDK clients built from one config share its
    /// HTTP client, and with it the connection.
    fn client(&self) -> Client {
        let mut http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
        if let Some(context) = &self.tls {
            http = http.tls_context(context.clone());
        }
        let config = self.config.to_builder().http_client(http.build_https()).build();
        Client::from_conf(config)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};

    use super::*;

    fn connections(per_connection: u32) -> Connections {
        let config = Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        Connections::new(config, None, per_connection)
    }

    #[test]
    fn a_connection_is_added_only_when_all_are_full() {
        let connections = connections(2);
        let first = connections.lease();
        let second = connections.lease();
        assert_eq!(connections.count(), 1);
        let third = connections.lease();
        assert_eq!(connections.count(), 2);
        drop((first, second, third));
    }

    #[test]
    fn streams_go_to_the_least_busy_connection_and_places_are_given_back() {
        let connections = connections(2);
        let leases: Vec<_> = (0..4).map(|_| connections.lease()).collect();
        assert_eq!(connections.count(), 2);
        // Free one place on the second connection: the next stream takes it.
        let mut leases = leases.into_iter();
        let (a, b, c, d) = (leases.next(), leases.next(), leases.next(), leases.next());
        let second = c.as_ref().map(|l| Arc::as_ptr(&l.connection));
        drop(c);
        let next = connections.lease();
        assert_eq!(Some(Arc::as_ptr(&next.connection)), second);
        assert_eq!(connections.count(), 2);
        drop((a, b, d, next));
        let open = connections.open.lock().unwrap_or_else(|p| p.into_inner());
        assert!(open.iter().all(|c| c.streams.load(Ordering::Relaxed) == 0));
    }
}
