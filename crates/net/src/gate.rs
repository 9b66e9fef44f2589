//! Admission of connections: a cap on open connections across both listeners and a cap
//! per client address, so one client (or a flood of idle sockets) cannot take every file
//! descriptor the process has.
//!
//! Each admitted connection holds an [`Admission`]; dropping it gives the slot back. The
//! connections of one address share a [`Client`], which also counts the request bytes
//! that address has in flight (`budget`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The caps, shared by both listeners.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connections_max: usize,
    per_client_max: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    clients: HashMap<IpAddr, Arc<Client>>,
}

/// One client address: its open connections and its request bytes in flight.
#[derive(Debug)]
pub struct Client {
    ip: IpAddr,
    connections: AtomicUsize,
    /// Request bytes in flight from this address (`budget::Charge`).
    pub(crate) bytes: AtomicUsize,
}

impl Client {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Request bytes this address has in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// A client that belongs to no gate (tests, and requests that did not come through a
    /// [`crate::Listener`]).
    pub fn detached(ip: IpAddr) -> Arc<Client> {
        Arc::new(Client {
            ip,
            connections: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        })
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every one of `connections_max` slots is taken.
    Total,
    /// The address holds `connections_per_client_max` connections already.
    PerClient,
}

/// A slot held by one open connection; given back on drop.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Inner>,
    client: Arc<Client>,
}

impl Gate {
    /// A gate admitting at most `connections_max` connections, and at most
    /// `per_client_max` from one address.
    pub fn new(connections_max: usize, per_client_max: usize) -> Gate {
        Gate {
            inner: Arc::new(Inner {
                connections_max,
                per_client_max,
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refused> {
        let mut table = self.lock();
        if table.open >= self.inner.connections_max {
            return Err(Refused::Total);
        }
        let client = table
            .clients
            .entry(ip)
            .or_insert_with(|| Client::detached(ip))
            .clone();
        if client.connections.load(Ordering::Relaxed) >= self.inner.per_client_max {
            return Err(Refused::PerClient);
        }
        client.connections.fetch_add(1, Ordering::Relaxed);
        table.open += 1;
        Ok(Admission {
            gate: self.inner.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// The cap on open connections.
    pub fn connections_max(&self) -> usize {
        self.inner.connections_max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds only counters, each left consistent before any call that
        // could panic; a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Admission {
    /// The client this connection belongs to.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut table = self.gate.lock();
        table.open -= 1;
        let left = self.client.connections.fetch_sub(1, Ordering::Relaxed) - 1;
        if left == 0 {
            // A request still in flight keeps its own reference; a later connection from
            // the same address starts a new entry.
            table.clients.remove(&self.client.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_hold_per_client_and_in_total_and_slots_come_back() {
        let gate = Gate::new(5, 3);
        let a: Vec<_> = (0..3).map(|_| gate.admit(ip(2)).unwrap()).collect();
        assert_eq!(gate.admit(ip(2)).unwrap_err(), Refused::PerClient);
        let b: Vec<_> = (0..2).map(|_| gate.admit(ip(3)).unwrap()).collect();
        assert_eq!(gate.admit(ip(1)).unwrap_err(), Refused::Total);
        assert_eq!(gate.open(), 5);
        drop(a);
        assert_eq!(gate.open(), 2);
        let c = gate.admit(ip(2)).unwrap();
        assert_eq!(c.client().ip(), ip(2));
        assert!(gate.admit(ip(1)).is_ok());
        drop(b);
        assert_eq!(gate.lock().clients.len(), 1);
    }

    #[test]
    fn connections_of_one_address_share_their_client() {
        let gate = Gate::new(10, 10);
        let a = gate.admit(ip(2)).unwrap();
        let b = gate.admit(ip(2)).unwrap();
        assert!(Arc::ptr_eq(a.client(), b.client()));
        assert!(!Arc::ptr_eq(
            a.client(),
            gate.admit(ip(3)).unwrap().client()
        ));
    }
}
