//! The tests' own setup: an outside server's install is made once, under a lock, even when
//! several tests (or test processes) need it at the same moment.

use std::path::PathBuf;

use ember_tests::{S3Server, install_moto_using};

#[test]
fn moto_is_installed_once_when_tests_race_for_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let venv = dir.path().join("moto-venv");
    // A python3 that notes each call, to count the environments made.
    let calls = dir.path().join("python3-calls");
    let python3 = dir.path().join("python3");
    std::fs::write(
        &python3,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec python3 \"$@\"\n",
            calls.display()
        ),
    )
    .expect("the python3 shim is written");
    std::fs::set_permissions(
        &python3,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("the python3 shim is executable");
    let pythons: Vec<PathBuf> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| install_moto_using(&venv, &python3)))
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("every racer gets moto"))
            .collect()
    });
    assert!(pythons.iter().all(|p| *p == venv.join("bin/python")));
    let made = std::fs::read_to_string(&calls).expect("python3 was called");
    assert_eq!(made.lines().count(), 1, "environments made: {made}");
    let server = S3Server::start_with(pythons[0].clone());
    server.create_bucket("raced");
}
