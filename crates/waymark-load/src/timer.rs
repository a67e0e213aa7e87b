//! Wakes the clients at their scheduled starts to within tens of
//! microseconds. tokio's timer wheel counts in whole milliseconds and
//! wakes up to one late; at a few milliseconds a transaction that lag is a
//! tenth of the latency, and it is the generator's, not the database's.
//! One thread sleeps to the nearest deadline (a futex wait, which the
//! kernel's high-resolution timers end on time) and wakes its task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

/// A deadline and the task waiting for it, ordered by deadline.
struct Due(Instant, u64, oneshot::Sender<()>);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

/// The timer; its thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    sender: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
}

impl Timer {
    pub(crate) fn start() -> Timer {
        let (sender, receiver) = mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("waymark-load-timer".to_owned())
            .spawn(move || {
                let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
                let mut seq = 0_u64;
                loop {
                    let now = Instant::now();
                    while heap.peek().is_some_and(|Reverse(d)| d.0 <= now) {
                        if let Some(Reverse(Due(_, _, wake))) = heap.pop() {
                            let _ = wake.send(());
                        }
                    }
                    let next = match heap.peek() {
                        Some(Reverse(d)) => receiver.recv_timeout(d.0.saturating_duration_since(now)),
                        None => receiver.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok((at, wake)) => {
                            seq += 1;
                            heap.push(Reverse(Due(at, seq, wake)));
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("a thread for the load's timer");
        Timer { sender }
    }

    /// Returns at `at`, or at once if it has passed.
    pub(crate) async fn sleep_until(&self, at: Instant) {
        let (wake, woken) = oneshot::channel();
        if self.sender.send((at, wake)).is_ok() {
            let _ = woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn deadlines_are_kept_in_order_and_on_time() {
        let timer = Timer::start();
        let start = Instant::now();
        let late = [7_u64, 3, 5].map(|ms| {
            let timer = timer.clone();
            let at = start + Duration::from_millis(ms);
            tokio::spawn(async move {
                timer.sleep_until(at).await;
                let woke = Instant::now();
                assert!(woke >= at, "woken early");
                woke - at
            })
        });
        for handle in late {
            let lag = handle.await.unwrap();
            // Never early; late by the wake's cost only, with room for a
            // busy test machine.
            assert!(lag < Duration::from_millis(20), "{lag:?}");
        }
        assert!(start.elapsed() >= Duration::from_millis(7));
        // A deadline already passed returns at once.
        timer.sleep_until(start).await;
    }
}
