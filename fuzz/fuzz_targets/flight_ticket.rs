//! Fuzz target: the Flight ticket parser. An executor decodes the bytes of a `do_get`
//! ticket from any peer into a `ShuffleTicket` and turns it into a file path; whatever
//! the bytes, it must not panic, and a path it accepts must lie inside the work
//! directory, in a job the executor ran, with no `..` in it.

#![no_main]

use std::path::{Component, PathBuf};
use std::sync::OnceLock;

use ember_executors::{Executor, ExecutorConfig, ShuffleCompression};
use ember_proto::pb::ShuffleTicket;
use ember_proto::security::ClientSecurity;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn executor() -> &'static (Executor, PathBuf) {
    static EXECUTOR: OnceLock<(Executor, PathBuf)> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let work_dir = std::env::temp_dir().join(format!("ember-fuzz-{}", std::process::id()));
        let executor = Executor::try_new(ExecutorConfig {
            id: "fuzz".into(),
            work_dir: work_dir.clone(),
            slots: 1,
            compression: ShuffleCompression::default(),
            security: ClientSecurity::default(),
            memory_limit: None,
            functions: ember::builtin_functions(),
        })
        .expect("executor");
        executor.accept_job("job-1").expect("job");
        executor.accept_job("j").expect("job");
        (executor, work_dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(ticket) = ShuffleTicket::decode(data) else {
        return;
    };
    let (executor, work_dir) = executor();
    if let Ok(path) = executor.shuffle_file(&ticket) {
        assert!(path.starts_with(work_dir), "{path:?} leaves the work dir");
        assert!(
            path.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::RootDir)),
            "{path:?} has a relative part"
        );
        assert!(ticket.job_id == "job-1" || ticket.job_id == "j", "{path:?}");
    }
});
