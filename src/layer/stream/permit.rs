//! The counts behind a [`StreamLimit`](crate::StreamLimit), and the place one stream
//! holds under them until its body is dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The streams open under one limit and its clones, and those refused.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    open: AtomicUsize,
    refused: AtomicU64,
    /// Open streams per client address; an address leaves the map at zero.
    clients: Mutex<HashMap<IpAddr, usize>>,
}

/// Which cap refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Server { max: usize },
    Client { addr: IpAddr, max: usize },
}

impl Counts {
    /// Takes a place for one stream, under at most `max` open, and at most
    /// `per_client.0` from the address `per_client.1` when both are known; or says
    /// which cap is reached (and counts the refusal). The stream counts as open until
    /// the permit is dropped.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        max: usize,
        per_client: Option<(usize, IpAddr)>,
    ) -> Result<StreamPermit, Scope> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        if taken.is_err() {
            return Err(self.refuse(Scope::Server { max }));
        }
        let mut permit = StreamPermit {
            counts: self.clone(),
            client: None,
        };
        if let Some((max, addr)) = per_client {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            let open = clients.entry(addr).or_insert(0);
            if *open >= max {
                if *open == 0 {
                    clients.remove(&addr);
                }
                drop(clients);
                drop(permit);
                return Err(self.refuse(Scope::Client { addr, max }));
            }
            *open += 1;
            permit.client = Some(addr);
        }
        Ok(permit)
    }

    fn refuse(&self, scope: Scope) -> Scope {
        self.refused.fetch_add(1, Ordering::Relaxed);
        scope
    }

    /// The streams open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The streams open now from `client`.
    pub(crate) fn open_from(&self, client: IpAddr) -> usize {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.get(&client).copied().unwrap_or(0)
    }

    /// The streams refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One open stream counted by a [`StreamLimit`](crate::StreamLimit); dropping it frees
/// the place.
pub(crate) struct StreamPermit {
    counts: Arc<Counts>,
    client: Option<IpAddr>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(addr) = self.client {
            let mut clients = self
                .counts
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(open) = clients.get_mut(&addr) {
                *open -= 1;
                if *open == 0 {
                    clients.remove(&addr);
                }
            }
        }
        self.counts.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for StreamPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamPermit")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}
