//! The scheduler's ids: [`JobId`], [`StageId`], [`PartitionId`] (a task without its
//! attempt), [`TaskId`] (one attempt) and [`ExecutorId`], and [`new_job_id`] that makes job
//! ids. A leaf, so the session, the commit of writes and the scheduler can all name jobs
//! without depending on one another.
//!
//! Each id serializes as the bare value it wraps (a string or a number), so the event log
//! and the metrics read the same as before the ids had types.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_JOB: AtomicU64 = AtomicU64::new(0);

/// A new job id, unique in this process and unlikely to meet another's: `PREFIX-PID-N-R`.
pub fn new_job_id(prefix: &str) -> String {
    // The random part keeps the ids of drivers on different machines (or in containers,
    // all PID 1) apart where they share a shuffle directory.
    format!(
        "{prefix}-{}-{}-{:06x}",
        std::process::id(),
        NEXT_JOB.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Declares a string id: shared text, cheap to clone.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(Arc::from(text))
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(Arc::from(text))
            }
        }

        impl From<&String> for $name {
            fn from(text: &String) -> Self {
                Self(Arc::from(text.as_str()))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
    };
}

text_id!(
    /// A job: names its folder on every executor.
    JobId
);

text_id!(
    /// An executor, as it registered.
    ExecutorId
);

/// A stage of a job: its index in the job (a stage reads only stages with smaller ids).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct StageId(pub usize);

impl StageId {
    /// The stage's index in its job.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage {}", self.0)
    }
}

/// One task of a stage, over all its attempts: partition `partition` of `stage`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PartitionId {
    /// The stage.
    pub stage: StageId,
    /// The partition of the stage the task computes.
    pub partition: usize,
}

impl PartitionId {
    /// Attempt `attempt` of this task.
    pub fn attempt(self, attempt: usize) -> TaskId {
        TaskId {
            stage: self.stage,
            partition: self.partition,
            attempt,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage, self.partition)
    }
}

impl fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One attempt of one task: every launch gets a new attempt number (and its own folder).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId {
    /// The stage.
    pub stage: StageId,
    /// The partition of the stage the task computes.
    pub partition: usize,
    /// 0 for the first try, 1.. for later ones.
    pub attempt: usize,
}

impl TaskId {
    /// The task this is an attempt of.
    pub fn partition_id(self) -> PartitionId {
        PartitionId {
            stage: self.stage,
            partition: self.partition,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}#{}", self.stage, self.partition, self.attempt)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_the_bare_values_they_wrap() -> serde_json::Result<()> {
        let task = PartitionId {
            stage: StageId(2),
            partition: 7,
        }
        .attempt(1);
        assert_eq!(
            serde_json::to_string(&task)?,
            r#"{"stage":2,"partition":7,"attempt":1}"#
        );
        assert_eq!(task.to_string(), "2.7#1");
        let executor = ExecutorId::from("exec-1");
        assert_eq!(serde_json::to_string(&executor)?, r#""exec-1""#);
        let back: ExecutorId = serde_json::from_str(r#""exec-1""#)?;
        assert_eq!(back, executor);
        assert!(executor == *"exec-1");
        Ok(())
    }
}
