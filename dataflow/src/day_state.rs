//! State held until the day ends, and a way for a process about to exit not to free it.
//!
//! A dataflow's state is millions of small allocations (every ExecID's fill and books record),
//! and dropping the dataflow frees them one by one: 54 ms of each worker's last moments in a
//! 1M-message replay without books, 180 ms with them (`perf` of `eod replay`), all of it after
//! the results are in. A process that exits next gets nothing from it: the operating system
//! takes the memory back at once. A worker thread that ends its process's work calls
//! [`skip_freeing_on_this_thread`], and the [`DayState`]s dropped on that thread afterwards are
//! left to the exit. Anything else (a process that runs on after its dataflow, every test)
//! frees as usual.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static SKIP_FREEING: Cell<bool> = const { Cell::new(false) };
}

/// From now on, [`DayState`]s dropped on this thread are not freed: call it only on a thread
/// whose process exits once the thread is done.
pub fn skip_freeing_on_this_thread() {
    SKIP_FREEING.with(|skip| skip.set(true));
}

/// An operator's state for the day; see the module.
#[derive(Default)]
pub(crate) struct DayState<T: Default>(T);

impl<T: Default> DayState<T> {
    pub(crate) fn new(state: T) -> Self {
        DayState(state)
    }
}

impl<T: Default> Deref for DayState<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> DerefMut for DayState<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Default> Drop for DayState<T> {
    fn drop(&mut self) {
        if SKIP_FREEING.with(Cell::get) {
            // An empty state is left in its place, and freed as usual (it holds nothing).
            std::mem::forget(std::mem::take(&mut self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Counted(Option<Arc<AtomicUsize>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            if let Some(drops) = &self.0 {
                drops.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn state_is_freed_unless_its_thread_skips_freeing() {
        let drops = Arc::new(AtomicUsize::new(0));
        let state = |drops: &Arc<AtomicUsize>| DayState(Counted(Some(drops.clone())));
        drop(state(&drops));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "freed by default");

        let on_thread = drops.clone();
        std::thread::spawn(move || {
            let kept = state(&on_thread);
            drop(state(&on_thread));
            skip_freeing_on_this_thread();
            drop(kept);
        })
        .join()
        .unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "freed before the thread skips freeing, left after"
        );

        drop(state(&drops));
        assert_eq!(drops.load(Ordering::SeqCst), 3, "other threads still free");
    }
}
