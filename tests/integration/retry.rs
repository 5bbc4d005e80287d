//! A task that fails is tried again and its job still succeeds; a task that keeps failing
//! fails its job with the task's error, and the job's shuffle files are removed either way.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use ember::{EmberConfig, EmberError, Session};
use ember_tests::{cells_match, rows, tpch_session};

/// Calls so far, per function name, over all executors of the process.
static CALLS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// The identity on doubles, failing its first `failures` calls.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FlakyIdentity {
    name: String,
    failures: usize,
    signature: Signature,
}

impl FlakyIdentity {
    fn udf(name: &str, failures: usize) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name: name.to_string(),
            failures,
            signature: Signature::exact(vec![DataType::Float64], Volatility::Volatile),
        })
    }
}

impl ScalarUDFImpl for FlakyIdentity {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = {
            let mut calls = CALLS
                .lock()
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            let n = calls.entry(self.name.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if call <= self.failures {
            return Err(DataFusionError::Execution(format!(
                "injected failure {call} of {}",
                self.name
            )));
        }
        Ok(args.args[0].clone())
    }
}

async fn session(work_dir: &std::path::Path, max_attempts: usize) -> Session {
    tpch_session(EmberConfig {
        executors: 2,
        max_attempts,
        work_dir: Some(work_dir.to_path_buf()),
        ..EmberConfig::default()
    })
    .await
}

/// Job folders left in any executor's work directory (beside each executor's folder lies
/// the lock file it holds while it lives).
fn leftover_job_dirs(work_dir: &std::path::Path) -> Vec<String> {
    let mut left = Vec::new();
    for executor in std::fs::read_dir(work_dir)
        .expect("work dir exists")
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        for job in std::fs::read_dir(executor.path())
            .expect("executor dir")
            .flatten()
            // Removed jobs' folders, while their files are deleted.
            .filter(|e| e.file_name() != ".removing")
        {
            left.push(job.path().display().to_string());
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_once_is_retried_and_the_job_succeeds() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = session(work.path(), 4).await;
    session.register_udf(FlakyIdentity::udf("flaky_once", 1));

    let result = session
        .sql("SELECT sum(flaky_once(CAST(l_quantity AS DOUBLE))) FROM lineitem")
        .await
        .expect("the retry succeeds");
    let expected = session
        .sql("SELECT sum(CAST(l_quantity AS DOUBLE)) FROM lineitem")
        .await
        .expect("plain query");
    let (got, want) = (rows(&result.batches), rows(&expected.batches));
    assert!(cells_match(&got[0][0], &want[0][0]), "{got:?} vs {want:?}");

    let metrics = result.metrics.expect("a job ran");
    assert_eq!(metrics.failures.len(), 1, "{:?}", metrics.failures);
    let failure = &metrics.failures[0];
    assert!(
        failure.error.contains("injected failure 1 of flaky_once"),
        "{failure:?}"
    );
    let retried = metrics
        .tasks
        .iter()
        .find(|t| t.stage_id == failure.stage_id && t.partition == failure.partition)
        .expect("the failed task finally ran");
    assert_eq!(retried.attempt, 1);
    assert!(leftover_job_dirs(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_fails_the_job_with_its_error_and_leaves_no_files() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = session(work.path(), 3).await;
    session.register_udf(FlakyIdentity::udf("always_fails", usize::MAX));

    let err = session
        .sql("SELECT sum(always_fails(CAST(l_quantity AS DOUBLE))) FROM lineitem")
        .await
        .expect_err("the job fails");
    match &err {
        EmberError::TaskFailed { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected a task failure, got {other:?}"),
    }
    assert!(err.to_string().contains("of always_fails"), "{err}");
    assert!(
        leftover_job_dirs(work.path()).is_empty(),
        "{:?}",
        leftover_job_dirs(work.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_unknown_to_the_executors_fails_with_its_name() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = session(work.path(), 1).await;
    // Known to the planner only, as when a cluster runs executors without the user's code.
    session
        .context()
        .register_udf(FlakyIdentity::udf("planner_only", 0));
    let err = session
        .sql("SELECT sum(planner_only(CAST(l_quantity AS DOUBLE))) FROM lineitem")
        .await
        .expect_err("executors cannot resolve the function");
    assert!(err.to_string().contains("planner_only"), "{err}");
}
