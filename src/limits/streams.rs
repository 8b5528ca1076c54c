//! Caps on open event streams: per visitor, per client address, per staff member, and in total.
//!
//! An event stream holds a connection (a file descriptor and its socket buffers) for as long as
//! the client likes. Without a cap, one client opening streams in a loop exhausts the process's
//! file descriptors and nobody else can connect, not even the health check. A stream takes a
//! [`StreamPermit`] when it opens and gives it back when it ends, however it ends (the permit is
//! dropped with the stream).
//!
//! The permit is kept small (one pointer and two 64-bit keys) because every idle stream carries
//! it: the memory per idle stream is one of the gateway's budgets.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// Who opens a stream, for its cap.
#[derive(Debug, Clone, Copy)]
pub enum StreamOwner<'a> {
    /// A website visitor (their contact id on the web channel).
    Visitor(&'a str),
    /// A staff member (their user id).
    Staff(&'a str),
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefused {
    /// The owner has their maximum open.
    #[error("too many event streams are open for this visitor or account; close one first")]
    Owner,
    /// The client address has its maximum open.
    #[error("too many event streams are open from this address")]
    Address,
    /// The gateway has its maximum open.
    #[error("the gateway has too many event streams open; try again shortly")]
    Total,
}

/// The caps and the counts.
pub struct StreamSlots {
    visitor_max: u32,
    staff_max: u32,
    address_max: u32,
    total_max: usize,
    total: AtomicUsize,
    /// Open streams by key; a key is absent at zero.
    open: Mutex<HashMap<u64, u32>>,
    hasher: std::collections::hash_map::RandomState,
    /// Clients on this machine are held to the total only.
    exempt_local: bool,
}

/// An open stream's place: given back when dropped.
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    owner: u64,
    address: u64,
}

impl StreamSlots {
    /// Caps; 0 is no cap (the total is always capped: `total_max` at least 1). With
    /// `exempt_local`, streams of loopback clients count against the total only.
    pub fn new(
        visitor_max: u32,
        staff_max: u32,
        address_max: u32,
        total_max: usize,
        exempt_local: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            visitor_max,
            staff_max,
            address_max,
            total_max: total_max.max(1),
            total: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            hasher: Default::default(),
            exempt_local,
        })
    }

    /// Takes a place for a stream of `owner` from `address`.
    pub fn open(
        self: &Arc<Self>,
        owner: StreamOwner<'_>,
        address: IpAddr,
    ) -> Result<StreamPermit, StreamRefused> {
        let local = self.exempt_local && address.to_canonical().is_loopback();
        let (owner_key, owner_max) = match owner {
            StreamOwner::Visitor(id) => (self.key(&("visitor", id)), self.visitor_max),
            StreamOwner::Staff(id) => (self.key(&("staff", id)), self.staff_max),
        };
        let owner_max = if local { 0 } else { owner_max };
        let address_key = self.key(&("address", super::address_key(address)));
        // Staff are not counted against their address: a support team shares an office's.
        let address_max = match owner {
            StreamOwner::Visitor(_) if !local => self.address_max,
            _ => 0,
        };
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total_max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(StreamRefused::Total);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let full = |key: u64, max: u32| max > 0 && open.get(&key).copied().unwrap_or(0) >= max;
        let refused = if full(owner_key, owner_max) {
            Some(StreamRefused::Owner)
        } else if full(address_key, address_max) {
            Some(StreamRefused::Address)
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(open);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(refused);
        }
        let owner = if owner_max > 0 {
            *open.entry(owner_key).or_default() += 1;
            owner_key
        } else {
            0
        };
        let address = if address_max > 0 {
            *open.entry(address_key).or_default() += 1;
            address_key
        } else {
            0
        };
        Ok(StreamPermit {
            slots: self.clone(),
            owner,
            address,
        })
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn key(&self, value: &impl Hash) -> u64 {
        // 0 stands for "not counted"; a hash of 0 is moved aside.
        self.hasher.hash_one(value).max(1)
    }

    fn close(&self, owner: u64, address: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for key in [owner, address] {
            if key == 0 {
                continue;
            }
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
        drop(open);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.slots.close(self.owner, self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OFFICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn each_cap_holds_and_places_come_back() {
        let slots = StreamSlots::new(2, 3, 3, 5, true);
        let a1 = slots.open(StreamOwner::Visitor("a"), HOME).unwrap();
        let _a2 = slots.open(StreamOwner::Visitor("a"), HOME).unwrap();
        assert_eq!(
            slots.open(StreamOwner::Visitor("a"), OFFICE).err(),
            Some(StreamRefused::Owner)
        );
        let _b1 = slots.open(StreamOwner::Visitor("b"), HOME).unwrap();
        assert_eq!(
            slots.open(StreamOwner::Visitor("c"), HOME).err(),
            Some(StreamRefused::Address),
            "three from HOME already"
        );
        let _c1 = slots.open(StreamOwner::Visitor("c"), OFFICE).unwrap();
        let _s1 = slots.open(StreamOwner::Staff("s"), HOME).unwrap();
        assert_eq!(slots.open_count(), 5);
        assert_eq!(
            slots.open(StreamOwner::Visitor("d"), OFFICE).err(),
            Some(StreamRefused::Total)
        );
        drop(a1);
        assert_eq!(slots.open_count(), 4);
        let _a3 = slots.open(StreamOwner::Visitor("a"), OFFICE).unwrap();
        assert_eq!(slots.open_count(), 5);
    }

    #[test]
    fn local_clients_count_against_the_total_only() {
        let slots = StreamSlots::new(1, 1, 1, 3, true);
        let local = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let _a = slots.open(StreamOwner::Visitor("a"), local).unwrap();
        let _b = slots.open(StreamOwner::Visitor("a"), local).unwrap();
        let _c = slots.open(StreamOwner::Visitor("a"), local).unwrap();
        assert_eq!(
            slots.open(StreamOwner::Visitor("a"), local).err(),
            Some(StreamRefused::Total)
        );
        let strict = StreamSlots::new(1, 1, 1, 3, false);
        let _a = strict.open(StreamOwner::Visitor("a"), local).unwrap();
        assert_eq!(
            strict.open(StreamOwner::Visitor("a"), local).err(),
            Some(StreamRefused::Owner)
        );
    }

    #[test]
    fn zero_is_no_cap_except_for_the_total() {
        let slots = StreamSlots::new(0, 0, 0, 0, true);
        let _one = slots.open(StreamOwner::Visitor("a"), HOME).unwrap();
        assert_eq!(
            slots.open(StreamOwner::Visitor("a"), HOME).err(),
            Some(StreamRefused::Total)
        );
    }
}
