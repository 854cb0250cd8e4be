//! `CI_CONCURRENT_ID` and `CI_CONCURRENT_PROJECT_ID`: the lowest index not used by a running job of the same
//! runner (and project), as gitlab-runner assigns them (runner-api.md §2.1). Because the shell executor's build
//! directory contains the project slot, two running jobs never share a directory.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
struct Inner {
    /// (runner token, concurrent id)
    runner_ids: BTreeSet<(String, usize)>,
    /// (runner token, project id, project slot)
    project_ids: BTreeSet<(String, i64, usize)>,
}

#[derive(Clone, Default)]
pub struct Slots(Arc<Mutex<Inner>>);

/// Both ids of one running job; released on drop.
pub struct Slot {
    slots: Slots,
    token: String,
    project: i64,
    pub concurrent_id: usize,
    pub project_slot: usize,
}

impl Slots {
    pub fn acquire(&self, token: &str, project: i64) -> Slot {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let concurrent_id = (0..)
            .find(|i| !inner.runner_ids.contains(&(token.to_string(), *i)))
            .unwrap_or(0);
        let project_slot = (0..)
            .find(|i| !inner.project_ids.contains(&(token.to_string(), project, *i)))
            .unwrap_or(0);
        inner.runner_ids.insert((token.to_string(), concurrent_id));
        inner
            .project_ids
            .insert((token.to_string(), project, project_slot));
        Slot {
            slots: self.clone(),
            token: token.to_string(),
            project,
            concurrent_id,
            project_slot,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.runner_ids.remove(&(self.token.clone(), self.concurrent_id));
        inner
            .project_ids
            .remove(&(self.token.clone(), self.project, self.project_slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_ids() {
        let s = Slots::default();
        let a = s.acquire("t", 1);
        let b = s.acquire("t", 1);
        let c = s.acquire("t", 2);
        assert_eq!((a.concurrent_id, a.project_slot), (0, 0));
        assert_eq!((b.concurrent_id, b.project_slot), (1, 1));
        assert_eq!((c.concurrent_id, c.project_slot), (2, 0));
        drop(a);
        let d = s.acquire("t", 1);
        assert_eq!((d.concurrent_id, d.project_slot), (0, 0));
        let other = s.acquire("u", 1);
        assert_eq!((other.concurrent_id, other.project_slot), (0, 0));
    }
}
