//! Byte credit: how much output a writer may hand on before its reader has
//! taken it. A node's stdout holds some credit; each line it emits carries a
//! [`Receipt`] for its bytes, and the credit comes back when the receipt is
//! dropped (the line was printed, written to a file, or sent on to the
//! launcher). A writer without credit waits, so a node that outprints its
//! reader is slowed to the reader's pace instead of filling memory.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The credit of one writer (stdout or stderr of one node; one worker's
/// stream at the launcher). Clones share it.
#[derive(Clone)]
pub struct Credit {
    bytes: Arc<Semaphore>,
    capacity: usize,
}

/// Bytes taken from a [`Credit`]; given back when this is dropped.
pub struct Receipt {
    credit: Option<Arc<Semaphore>>,
    bytes: usize,
}

impl Credit {
    /// Credit for `capacity` bytes in flight.
    pub fn new(capacity: usize) -> Credit {
        Credit {
            bytes: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// The most bytes ever in flight at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many bytes may be taken now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Take `bytes` now, or nothing (`None`) if fewer are left.
    pub fn try_take(&self, bytes: usize) -> Option<Receipt> {
        let permits = u32::try_from(bytes).ok()?;
        self.bytes.try_acquire_many(permits).ok()?.forget();
        Some(self.receipt(bytes))
    }

    /// Take `bytes` (at most the capacity), waiting until they are free.
    pub async fn take(&self, bytes: usize) -> Receipt {
        let bytes = bytes.min(self.capacity);
        // The semaphore is never closed, so acquiring only waits.
        if let Ok(permits) = self.bytes.acquire_many(bytes as u32).await {
            permits.forget();
        }
        self.receipt(bytes)
    }

    /// Wait until at least one byte is free.
    pub async fn ready(&self) {
        let _free = self.bytes.acquire().await;
    }

    /// A receipt for `bytes` already taken from this credit (by
    /// [`Credit::try_take`] or [`Credit::take`], then split).
    pub fn receipt(&self, bytes: usize) -> Receipt {
        Receipt {
            credit: Some(self.bytes.clone()),
            bytes,
        }
    }
}

impl Receipt {
    /// A receipt that gives nothing back (for lines no credit was taken for).
    pub fn none() -> Receipt {
        Receipt {
            credit: None,
            bytes: 0,
        }
    }

    /// Whether this receipt came from a credit.
    pub fn holds_credit(&self) -> bool {
        self.credit.is_some()
    }

    /// Split `bytes` off into a receipt of their own.
    pub fn split(&mut self, bytes: usize) -> Receipt {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Receipt {
            credit: self.credit.clone(),
            bytes,
        }
    }

    /// Add `other`'s bytes to this receipt (both from one credit).
    pub fn absorb(&mut self, mut other: Receipt) {
        if self.credit.is_none() {
            self.credit = other.credit.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(credit) = &self.credit
            && self.bytes > 0
        {
            credit.add_permits(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_comes_back_when_the_receipt_is_dropped() {
        let credit = Credit::new(10);
        let mut receipt = credit.try_take(8).expect("8 of 10 bytes");
        assert_eq!(credit.available(), 2);
        assert!(credit.try_take(3).is_none());
        let part = receipt.split(5);
        drop(part);
        assert_eq!(credit.available(), 7);
        drop(receipt);
        assert_eq!(credit.available(), 10);
    }

    #[tokio::test]
    async fn take_waits_for_credit_given_back_elsewhere() {
        let credit = Credit::new(4);
        let held = credit.try_take(4).expect("all of it");
        let waiter = {
            let credit = credit.clone();
            tokio::spawn(async move { credit.take(3).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let receipt = waiter.await.expect("the waiter ends");
        assert_eq!(credit.available(), 1);
        drop(receipt);
        assert_eq!(credit.available(), 4);
    }
}
