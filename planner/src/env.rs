//! [`TaskEnv`]: what user functions can reach while a task runs: the broadcast variables
//! shipped to this executor and the accumulators this task attempt adds to.
//!
//! The executor puts a `TaskEnv` in each task's `SessionConfig` extensions;
//! [`MapPartitionsExec`](crate::MapPartitionsExec) makes it the thread's current
//! environment for exactly the duration of each synchronous call into a user function
//! ([`with_task_env`]), so user code finds it with [`current_task_env`] whichever worker
//! thread runs the call. Accumulator additions stay with the attempt: the executor reports
//! them only when the attempt succeeds, so a retried task's additions count once.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::error::{DataFusionError, Result};
use ember_proto::AccumulatorValue;

/// One broadcast variable on an executor: its serialized bytes and, once a task has read
/// it, the decoded value (decoded once per executor, not once per call).
struct BroadcastEntry {
    bytes: Arc<[u8]>,
    decoded: Mutex<Option<Arc<dyn Any + Send + Sync>>>,
}

/// The broadcast variables an executor holds, by name.
#[derive(Default)]
pub struct BroadcastStore {
    entries: RwLock<HashMap<String, Arc<BroadcastEntry>>>,
}

impl fmt::Debug for BroadcastStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = match self.entries.read() {
            Ok(entries) => entries.keys().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().keys().cloned().collect(),
        };
        f.debug_struct("BroadcastStore")
            .field("names", &names)
            .finish()
    }
}

impl BroadcastStore {
    /// Stores (or replaces) the variable `name`.
    pub fn put(&self, name: &str, bytes: Arc<[u8]>) {
        let entry = Arc::new(BroadcastEntry {
            bytes,
            decoded: Mutex::new(None),
        });
        match self.entries.write() {
            Ok(mut entries) => entries.insert(name.to_string(), entry),
            Err(poisoned) => poisoned.into_inner().insert(name.to_string(), entry),
        };
    }

    /// Drops the variable `name`.
    pub fn remove(&self, name: &str) {
        match self.entries.write() {
            Ok(mut entries) => entries.remove(name),
            Err(poisoned) => poisoned.into_inner().remove(name),
        };
    }

    fn entry(&self, name: &str) -> Result<Arc<BroadcastEntry>> {
        let entries = match self.entries.read() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = entries.keys().map(String::as_str).collect();
            known.sort_unstable();
            DataFusionError::Execution(format!(
                "no broadcast variable named '{name}' on this executor (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The variable `name`, decoded by `decode` on first use and kept decoded.
    pub fn value<T: Any + Send + Sync>(
        &self,
        name: &str,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Arc<T>> {
        let entry = self.entry(name)?;
        let mut decoded = match entry.decoded.lock() {
            Ok(decoded) => decoded,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(value) = decoded.as_ref()
            && let Ok(value) = Arc::clone(value).downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(decode(&entry.bytes)?);
        *decoded = Some(Arc::clone(&value) as Arc<dyn Any + Send + Sync>);
        Ok(value)
    }
}

/// The environment of one task attempt.
#[derive(Debug)]
pub struct TaskEnv {
    task: String,
    broadcasts: Arc<BroadcastStore>,
    accumulators: Mutex<HashMap<String, AccumulatorValue>>,
}

impl TaskEnv {
    /// The environment of task attempt `task` (its name, for messages) on an executor
    /// holding `broadcasts`.
    pub fn new(task: String, broadcasts: Arc<BroadcastStore>) -> Self {
        Self {
            task,
            broadcasts,
            accumulators: Mutex::new(HashMap::new()),
        }
    }

    /// The task attempt's name (`job/stage.partition#attempt`).
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The executor's broadcast variables.
    pub fn broadcasts(&self) -> &BroadcastStore {
        &self.broadcasts
    }

    /// Adds `value` to the accumulator `name` for this attempt.
    pub fn add(&self, name: &str, value: AccumulatorValue) {
        let mut accumulators = match self.accumulators.lock() {
            Ok(accumulators) => accumulators,
            Err(poisoned) => poisoned.into_inner(),
        };
        accumulators
            .entry(name.to_string())
            .and_modify(|v| v.merge(value))
            .or_insert(value);
    }

    /// What this attempt added to each accumulator.
    pub fn accumulators(&self) -> Vec<(String, AccumulatorValue)> {
        let accumulators = match self.accumulators.lock() {
            Ok(accumulators) => accumulators,
            Err(poisoned) => poisoned.into_inner(),
        };
        accumulators.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<TaskEnv>>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` as this thread's current task environment, then restores the
/// previous one.
pub fn with_task_env<R>(env: Option<&Arc<TaskEnv>>, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|current| current.replace(env.cloned()));
    let result = f();
    CURRENT.with(|current| current.replace(previous));
    result
}

/// The environment of the task whose user function is running on this thread; `None`
/// outside user functions (for example on the driver).
pub fn current_task_env() -> Option<Arc<TaskEnv>> {
    CURRENT.with(|current| current.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulators_merge_and_the_environment_is_scoped_to_the_call() {
        let env = Arc::new(TaskEnv::new("t".into(), Arc::default()));
        assert!(current_task_env().is_none());
        with_task_env(Some(&env), || {
            let current = current_task_env().expect("set during the call");
            current.add("n", AccumulatorValue::Long(2));
            current.add("n", AccumulatorValue::Long(3));
            current.add("x", AccumulatorValue::Double(0.5));
        });
        assert!(current_task_env().is_none());
        let mut values = env.accumulators();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            values,
            vec![
                ("n".to_string(), AccumulatorValue::Long(5)),
                ("x".to_string(), AccumulatorValue::Double(0.5))
            ]
        );
    }

    #[test]
    fn a_broadcast_value_is_decoded_once() {
        let store = BroadcastStore::default();
        store.put("v", Arc::from(b"41".as_slice()));
        let decode = |bytes: &[u8]| -> Result<i64> {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            text.parse::<i64>()
                .map(|v| v + 1)
                .map_err(|e| DataFusionError::Execution(e.to_string()))
        };
        assert_eq!(*store.value("v", decode).expect("decodes"), 42);
        let again = store
            .value::<i64>("v", |_| {
                Err(DataFusionError::Execution("decoded twice".into()))
            })
            .expect("kept decoded");
        assert_eq!(*again, 42);
        let missing = store.value::<i64>("w", decode).expect_err("not there");
        assert!(missing.to_string().contains("'w'"), "{missing}");
    }
}
