//! The in-flight request-bytes budget both listeners share: request bodies being read (and
//! what they decode into, while their call runs) are charged to it, in total and per
//! client address, so that half-sent uploads cannot grow the heap past a set size.
//!
//! A charge over the client's share is refused at once (that client is the one to slow
//! down); a charge over the total waits up to `wait` for others to finish, then is
//! refused. Either way the caller answers with a throttling error the client retries
//! (`Throttled`). A request knows its size from its first bytes (a gRPC message's
//! length prefix, an HTTP `Content-Length`) and is charged for all of it then, so the
//! requests that hold the budget can always finish: none waits for more while holding
//! part of it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::gate::Client;

/// The budget is counted in units of this many bytes (the semaphore counts in `u32`).
const UNIT_BYTES: usize = 1024;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    units_max: usize,
    per_client_max: usize,
    wait: Duration,
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// The client's address has its share in flight already.
    Client,
    /// The server's total is in flight and did not free up within the wait.
    Server,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Throttled::Client => {
                "this client has too many request bytes in flight; retry after its earlier requests finish"
            }
            Throttled::Server => {
                "the server has too many request bytes in flight; retry with backoff"
            }
        })
    }
}

/// Bytes charged to the budget for one request; given back on drop.
#[derive(Debug)]
pub struct Charge {
    client: Arc<Client>,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
    budget: Budget,
}

impl Budget {
    /// A budget of `bytes_max` in total and `per_client_max` per client address; a charge
    /// over the total waits up to `wait`.
    pub fn new(bytes_max: usize, per_client_max: usize, wait: Duration) -> Budget {
        let units_max = bytes_max.div_ceil(UNIT_BYTES).min(Semaphore::MAX_PERMITS);
        Budget {
            semaphore: Arc::new(Semaphore::new(units_max)),
            units_max,
            per_client_max,
            wait,
        }
    }

    /// A charge of nothing, to grow.
    pub fn none(&self, client: &Arc<Client>) -> Charge {
        Charge {
            client: client.clone(),
            bytes: 0,
            permit: None,
            budget: self.clone(),
        }
    }

    /// Charges `bytes` for `client` (see the module docs for when it waits).
    pub async fn charge(&self, client: &Arc<Client>, bytes: usize) -> Result<Charge, Throttled> {
        let mut charge = self.none(client);
        charge.grow(bytes).await?;
        Ok(charge)
    }

    /// Bytes free in the total now.
    pub fn available_bytes(&self) -> usize {
        self.semaphore.available_permits() * UNIT_BYTES
    }
}

impl Charge {
    /// Bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Charges `more` bytes on top (see the module docs for when it waits).
    pub async fn grow(&mut self, more: usize) -> Result<(), Throttled> {
        if more == 0 {
            return Ok(());
        }
        let budget = self.budget.clone();
        let before = self.client.bytes.fetch_add(more, Ordering::AcqRel);
        if before.saturating_add(more) > budget.per_client_max {
            self.client.bytes.fetch_sub(more, Ordering::AcqRel);
            return Err(Throttled::Client);
        }
        let units = units(self.bytes + more) - units(self.bytes);
        let acquired = match u32::try_from(units) {
            Ok(0) => Ok(None),
            Ok(n) if units <= budget.units_max => acquire(&budget, n).await.map(Some),
            _ => Err(Throttled::Server),
        };
        match acquired {
            Ok(permit) => {
                self.bytes += more;
                match (&mut self.permit, permit) {
                    (Some(held), Some(new)) => held.merge(new),
                    (held @ None, new) => *held = new,
                    (Some(_), None) => {}
                }
                Ok(())
            }
            Err(e) => {
                self.client.bytes.fetch_sub(more, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Gives back all but `bytes` (no-op if fewer are charged).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            return;
        }
        let freed_units = units(self.bytes) - units(bytes);
        if let Some(permit) = &mut self.permit {
            // `split` hands the units back when the part split off is dropped.
            drop(permit.split(freed_units));
        }
        self.client
            .bytes
            .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        self.bytes = bytes;
    }

    /// Moves `other`'s bytes into this charge (both for the same client).
    pub fn absorb(&mut self, mut other: Charge) {
        debug_assert!(Arc::ptr_eq(&self.client, &other.client));
        // Units are rounded per charge: keep other's permit whole rather than re-rounding.
        self.bytes += std::mem::take(&mut other.bytes);
        match (&mut self.permit, other.permit.take()) {
            (Some(held), Some(new)) => held.merge(new),
            (held @ None, new) => *held = new,
            (Some(_), None) => {}
        }
        // `other` now holds nothing; its drop gives nothing back.
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.client.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        }
        // The permit, if any, gives its units back as it drops.
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT_BYTES)
}

async fn acquire(budget: &Budget, units: u32) -> Result<OwnedSemaphorePermit, Throttled> {
    let semaphore = budget.semaphore.clone();
    if let Ok(permit) = semaphore.clone().try_acquire_many_owned(units) {
        return Ok(permit);
    }
    match tokio::time::timeout(budget.wait, semaphore.acquire_many_owned(units)).await {
        Ok(Ok(permit)) => Ok(permit),
        // The semaphore is never closed; a timeout is the server being full.
        Ok(Err(_)) | Err(_) => Err(Throttled::Server),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn client(last: u8) -> Arc<Client> {
        Client::detached(IpAddr::from([127, 0, 0, last]))
    }

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn a_client_past_its_share_is_refused_at_once_and_others_go_on() {
        let budget = Budget::new(16 * MIB, 8 * MIB, Duration::from_secs(3600));
        let greedy = client(2);
        let held = budget.charge(&greedy, 8 * MIB).await.unwrap();
        assert_eq!(greedy.bytes_in_flight(), 8 * MIB);
        assert_eq!(
            budget.charge(&greedy, 1).await.unwrap_err(),
            Throttled::Client
        );
        let other = client(3);
        let ok = budget.charge(&other, 8 * MIB).await.unwrap();
        assert_eq!(budget.available_bytes(), 0);
        drop(held);
        assert_eq!(greedy.bytes_in_flight(), 0);
        assert_eq!(budget.available_bytes(), 8 * MIB);
        drop(ok);
        assert_eq!(budget.available_bytes(), 16 * MIB);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_server_makes_charges_wait_then_refuses_them() {
        let budget = Budget::new(4 * MIB, 4 * MIB, Duration::from_millis(100));
        let held = budget.charge(&client(2), 4 * MIB).await.unwrap();
        // With the clock paused, the wait ends only by the timeout: no thread timing.
        let refused = client(3);
        assert_eq!(
            budget.charge(&refused, MIB).await.unwrap_err(),
            Throttled::Server
        );
        assert_eq!(refused.bytes_in_flight(), 0);
        // A waiter is served as soon as the bytes are given back.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.charge(&client(4), MIB).await.map(|c| c.bytes()) })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(MIB));
    }

    #[tokio::test]
    async fn a_charge_larger_than_the_budget_is_refused_not_waited_for() {
        let budget = Budget::new(MIB, 4 * MIB, Duration::from_secs(3600));
        assert_eq!(
            budget.charge(&client(2), 2 * MIB).await.unwrap_err(),
            Throttled::Server
        );
    }

    #[tokio::test]
    async fn charges_grow_shrink_and_merge() {
        let budget = Budget::new(8 * MIB, 8 * MIB, Duration::from_secs(3600));
        let c = client(2);
        let mut charge = budget.none(&c);
        charge.grow(3 * MIB).await.unwrap();
        charge.grow(100).await.unwrap();
        assert_eq!(c.bytes_in_flight(), 3 * MIB + 100);
        charge.shrink_to(MIB);
        assert_eq!(c.bytes_in_flight(), MIB);
        assert_eq!(budget.available_bytes(), 7 * MIB);
        let other = budget.charge(&c, 2 * MIB).await.unwrap();
        charge.absorb(other);
        assert_eq!(charge.bytes(), 3 * MIB);
        assert_eq!(c.bytes_in_flight(), 3 * MIB);
        drop(charge);
        assert_eq!(c.bytes_in_flight(), 0);
        assert_eq!(budget.available_bytes(), 8 * MIB);
    }
}
