//! The allocator of Ember's binaries (`ember`, and `ember-bench` through a `#[path]` to
//! this file): mimalloc, as datafusion-cli, with freed memory kept for a while before it
//! goes back to the kernel.
//!
//! Arrow's buffers come and go by the megabyte. mimalloc hands freed pages back to the
//! kernel after its `purge_delay` (1 s by default), and asks for transparent huge pages;
//! the kernel then zeroes every 2 MiB page that is touched again. A shuffle reader over
//! Flight spent 54 % of its samples in `clear_page_erms` that way (a map stage frees what
//! the read stage then allocates again). [`configure`] sets the delay to
//! [`PURGE_DELAY_MS`]: memory a process stopped using still goes back, ten seconds later.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// The allocator of this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`; libmimalloc-sys does not
/// name it). The test below checks it against the `MIMALLOC_PURGE_DELAY` variable.
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc gives it back, in ms.
pub const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// The environment variable with which a user sets mimalloc's purge delay; when set, it
/// wins over [`PURGE_DELAY_MS`].
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Whether mimalloc reads `value` as an option value: a whole number, or one of the words it
/// takes for 1 and 0. Any other value it ignores without a word (its warnings are off).
fn mimalloc_reads(value: &str) -> bool {
    let value = value.to_ascii_lowercase();
    value.parse::<i64>().is_ok()
        || ["on", "yes", "true", "off", "no", "false"].contains(&value.as_str())
}

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless the user set
/// `MIMALLOC_PURGE_DELAY` to a value mimalloc reads (a value it cannot read is named on
/// stderr and replaced). Called first thing in `main`, before other threads start.
pub fn configure() {
    if let Some(value) = std::env::var_os(PURGE_DELAY_VARIABLE) {
        let value = value.to_string_lossy();
        if mimalloc_reads(&value) {
            return;
        }
        eprintln!(
            "warning: {PURGE_DELAY_VARIABLE}={value:?} is not a number of milliseconds; \
             using {PURGE_DELAY_MS}"
        );
    }
    // SAFETY: mimalloc's documented call to change one integer option; no pointers are
    // passed, and no other thread runs yet to read the option as it changes.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(PURGE_DELAY, PURGE_DELAY_MS)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option's value now.
    #[allow(unsafe_code)]
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one integer option.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    /// mimalloc reads `MIMALLOC_PURGE_DELAY` as the process loads: this test runs itself
    /// again with it set, and the child finds that value at [`PURGE_DELAY`], so the index
    /// names the option the variable sets. `configure` leaves a user's value alone.
    #[test]
    fn the_purge_delay_is_the_option_mimalloc_reads_from_its_variable() {
        if let Some(value) = std::env::var_os(PURGE_DELAY_VARIABLE) {
            configure();
            let value = value.to_string_lossy().parse::<std::ffi::c_long>();
            assert_eq!(value, Ok(purge_delay()));
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "allocator::tests::the_purge_delay_is_the_option_mimalloc_reads_from_its_variable",
            ])
            .env(PURGE_DELAY_VARIABLE, "4321")
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
        configure();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }

    #[test]
    fn values_mimalloc_cannot_read_are_told_apart() {
        for read in ["0", "-1", "10000", "off", "TRUE"] {
            assert!(mimalloc_reads(read), "{read}");
        }
        for unread in ["", "10s", "abc", "1.5", "250 "] {
            assert!(!mimalloc_reads(unread), "{unread}");
        }
    }
}
