//! Messages for a shared child's sessions, delivered outside the child's lock in the order the
//! mux produced them.
//!
//! Owns: the delivery queue. Must not touch: what is delivered, or to whom (the mux decides).

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::Mutex;

use super::api::Client;

/// Messages for sessions, queued in the mux's order and delivered outside its lock by one
/// task at a time (whoever finds the queue undrained drains it), so each session receives its
/// messages in order.
#[derive(Default)]
pub(super) struct Deliveries {
    pub(super) queue: Mutex<VecDeque<(Arc<dyn Client>, String)>>,
    draining: AtomicBool,
}

impl Deliveries {
    /// Delivers what is queued (unless another task is at it); returns the sessions that stopped
    /// reading.
    pub(super) fn drain(&self) -> Vec<Arc<dyn Client>> {
        let mut closes = vec![];
        loop {
            if self.draining.swap(true, Ordering::AcqRel) {
                // The task draining now delivers what was queued.
                return closes;
            }
            loop {
                let next = self.queue.lock().pop_front();
                let Some((client, message)) = next else {
                    break;
                };
                if !client.send(message) {
                    closes.push(client);
                }
            }
            self.draining.store(false, Ordering::Release);
            // Something queued between the last pop and the release is ours to deliver.
            if self.queue.lock().is_empty() {
                return closes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::backend::api::CloseCause;
    use uuid::Uuid;

    /// Records what it was sent.
    struct Recorder {
        id: Uuid,
        got: Mutex<Vec<String>>,
    }

    impl Client for Recorder {
        fn id(&self) -> Uuid {
            self.id
        }
        fn name(&self) -> &str {
            "recorder"
        }
        fn send(&self, message: String) -> bool {
            self.got.lock().push(message);
            true
        }
        fn send_unbounded(&self, message: String) {
            self.got.lock().push(message);
        }
        fn end(&self, _: CloseCause) {}
    }

    /// Many threads queue messages under one lock (as the mux's lock orders them) and deliver
    /// outside it: every message arrives once, and each client gets its messages in the order
    /// they were queued.
    #[test]
    fn deliveries_keep_the_queue_order_whoever_drains() {
        let deliveries = Arc::new(Deliveries::default());
        let order = Arc::new(Mutex::new(0u64));
        let clients: Vec<Arc<Recorder>> = (0..4)
            .map(|_| {
                Arc::new(Recorder {
                    id: Uuid::new_v4(),
                    got: Mutex::default(),
                })
            })
            .collect();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (deliveries, order, clients) =
                    (deliveries.clone(), order.clone(), clients.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        {
                            let mut n = order.lock();
                            *n += 1;
                            let client: Arc<dyn Client> = clients[i % clients.len()].clone();
                            deliveries.queue.lock().push_back((client, n.to_string()));
                        }
                        assert!(deliveries.drain().is_empty());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(deliveries.drain().is_empty());
        let mut total = 0;
        for c in &clients {
            let got: Vec<u64> = c.got.lock().iter().map(|m| m.parse().unwrap()).collect();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
            total += got.len();
        }
        assert_eq!(total, 8 * 2000);
        assert!(deliveries.queue.lock().is_empty());
    }
}
