//! A first-in, first-out queue that keeps its oldest item inline and allocates only for a
//! backlog. A session's queues (reply frames to the socket, audio to and from the model) hold
//! one item at a time almost always: with a `VecDeque`, the first push allocates four slots that
//! every session then keeps for its whole length; here that item lives in the queue itself, and
//! the storage of a backlog is released once it drains (BENCHMARKS.md, tuning).

use std::collections::VecDeque;

pub(crate) struct Fifo<T> {
    /// The oldest item; `None` only when the queue is empty.
    head: Option<T>,
    /// The items after it, in order.
    rest: VecDeque<T>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Fifo<T> {
    pub(crate) const fn new() -> Self {
        Self {
            head: None,
            rest: VecDeque::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub(crate) fn push_back(&mut self, item: T) {
        if self.head.is_none() {
            self.head = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let item = self.head.take()?;
        self.head = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // The backlog is over: its storage goes back, so that one burst is not kept for the
            // rest of the session.
            self.rest = VecDeque::new();
        }
        Some(item)
    }

    /// Empties the queue and releases its storage.
    pub(crate) fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
    }

    /// Items the queue has storage for beyond the inline one.
    #[cfg(test)]
    pub(crate) fn backlog_capacity(&self) -> usize {
        self.rest.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_the_inline_slot_and_the_backlog() {
        let mut fifo = Fifo::new();
        assert!(fifo.is_empty());
        assert_eq!(fifo.pop_front(), None::<u32>);
        fifo.push_back(1);
        fifo.push_back(2);
        fifo.push_back(3);
        assert_eq!(fifo.len(), 3);
        assert_eq!(fifo.pop_front(), Some(1));
        fifo.push_back(4);
        assert_eq!(fifo.pop_front(), Some(2));
        assert_eq!(fifo.pop_front(), Some(3));
        fifo.push_back(5);
        assert_eq!(fifo.pop_front(), Some(4));
        assert_eq!(fifo.pop_front(), Some(5));
        assert_eq!(fifo.pop_front(), None);
        assert_eq!(fifo.len(), 0);
    }

    #[test]
    fn one_item_at_a_time_allocates_nothing() {
        let mut fifo = Fifo::new();
        for i in 0..100 {
            fifo.push_back(i);
            assert_eq!(fifo.pop_front(), Some(i));
        }
        assert_eq!(fifo.backlog_capacity(), 0);
    }

    #[test]
    fn a_drained_backlog_gives_back_its_storage() {
        let mut fifo = Fifo::new();
        for i in 0..64 {
            fifo.push_back(i);
        }
        assert!(fifo.backlog_capacity() >= 63);
        while fifo.pop_front().is_some() {}
        assert_eq!(fifo.backlog_capacity(), 0);
        fifo.push_back(1);
        fifo.push_back(2);
        fifo.clear();
        assert!(fifo.is_empty());
        assert_eq!(fifo.backlog_capacity(), 0);
    }
}
