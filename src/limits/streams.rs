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
}

/// An open stream's place: given back when dropped.
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    owner: u64,
    address: u64,
}

impl StreamSlots {
    /// Caps; 0 is no cap (the total is always capped: `total_max` at least 1).
    pub fn new(visitor_max: u32, staff_max: u32, address_max: u32, total_max: usize) -> Arc<Self> {
        Arc::new(Self {
            visitor_max,
            staff_max,
            address_max,
            total_max: total_max.max(1),
            total: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            hasher: Default::default(),
        })
    }

    /// Takes a place for a stream of `owner` from `address`.
    pub fn open(
        self: &Arc<Self>,
        owner: StreamOwner<'_>,
        address: IpAddr,
    ) -> Result<StreamPermit, StreamRefused> {
        let (owner_key, owner_max) = match owner {
            StreamOwner::Visitor(id) => (self.key(&("visitor", id)), self.visitor_max),
            StreamOwner::Staff(id) => (self.key(&("staff", id)), self.staff_max),
        };
        let address_key = self.key(&("address", address));
        // Staff are not counted against their address: a support team shares an office's.
        let address_max = match owner {
            StreamOwner::Visitor(_) => self.address_max,
            StreamOwner::Staff(_) => 0,
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
        *open.entry(owner_key).or_default() += 1;
        let address = if address_max > 0 {
            *open.entry(address_key).or_default() += 1;
            address_key
        } else {
            0
        };
        Ok(StreamPermit {
            slots: self.clone(),
            owner: owner_key,
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
        let slots = StreamSlots::new(2, 3, 3, 5);
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
    fn zero_is_no_cap_except_for_the_total() {
        let slots = StreamSlots::new(0, 0, 0, 0);
        let _one = slots.open(StreamOwner::Visitor("a"), HOME).unwrap();
        assert_eq!(
            slots.open(StreamOwner::Visitor("a"), HOME).err(),
            Some(StreamRefused::Total)
        );
    }
}
