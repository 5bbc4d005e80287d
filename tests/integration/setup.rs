//! The tests' own setup: an outside server's install is made once, under a lock, even when
//! several tests (or test processes) need it at the same moment.

use std::path::PathBuf;

use ember_tests::{S3Server, install_moto};

#[test]
fn moto_is_installed_once_when_tests_race_for_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let venv = dir.path().join("moto-venv");
    let pythons: Vec<PathBuf> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| install_moto(&venv)))
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("every racer gets moto"))
            .collect()
    });
    assert!(pythons.iter().all(|p| *p == venv.join("bin/python")));
    let server = S3Server::start_with(pythons[0].clone());
    server.create_bucket("raced");
}
