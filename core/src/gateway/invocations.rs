//! Invocations in flight: who waits for which node's answer. The node
//! runtime decides what times out and whose node left; this table hands
//! the outcome to the caller waiting for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use keygate_proto::InvokeResult;

use crate::node::Refusal;

/// An invocation's outcome: the node's answer, or why there is none.
pub type Outcome = Result<InvokeResult, Refusal>;

/// The callers waiting, by invocation id.
#[derive(Debug, Default)]
pub struct Invocations {
    waiting: Mutex<HashMap<String, Sender<Outcome>>>,
}

impl Invocations {
    /// Waits for `invocation_id`: the outcome arrives on the receiver.
    pub fn expect(&self, invocation_id: &str) -> Receiver<Outcome> {
        let (tx, rx) = channel();
        self.lock().insert(invocation_id.to_owned(), tx);
        rx
    }

    /// Delivers the outcome of `invocation_id` to its caller, if it still
    /// waits.
    pub fn complete(&self, invocation_id: &str, outcome: Outcome) {
        if let Some(tx) = self.lock().remove(invocation_id) {
            // The caller may have given up; nothing to do then.
            let _ = tx.send(outcome);
        }
    }

    /// Forgets `invocation_id` (its caller gave up).
    pub fn forget(&self, invocation_id: &str) {
        self.lock().remove(invocation_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sender<Outcome>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use keygate_proto::RefusalCode;

    use super::*;

    #[test]
    fn the_outcome_reaches_the_caller_of_that_invocation_only() {
        let table = Invocations::default();
        let a = table.expect("inv-1");
        let b = table.expect("inv-2");
        table.complete(
            "inv-2",
            Err(Refusal {
                code: RefusalCode::Timeout,
                reason: "late".into(),
            }),
        );
        assert_eq!(
            b.try_recv().unwrap().unwrap_err().code,
            RefusalCode::Timeout
        );
        assert!(a.try_recv().is_err());
        table.complete(
            "inv-1",
            Ok(InvokeResult {
                invocation_id: "inv-1".into(),
                ok: true,
                payload: b"hi".to_vec(),
            }),
        );
        assert_eq!(a.try_recv().unwrap().unwrap().payload, b"hi");
        // Completed once: a second answer finds nobody.
        table.complete(
            "inv-1",
            Err(Refusal {
                code: RefusalCode::Timeout,
                reason: String::new(),
            }),
        );
        assert!(a.try_recv().is_err());
    }
}
