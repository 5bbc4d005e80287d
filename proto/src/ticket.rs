//! Where a shuffle piece lies inside an executor's work directory: one layout, shared by
//! the writer that makes the files, the Flight server that serves them (through
//! `ShuffleTicket::checked_key`, in [`crate::convert`]) and the object-store keys.
//!
//! ```text
//!   WORK_DIR/JOB/stage-S/map-M-attempt-A/part-P.arrow
//! ```

use std::path::PathBuf;

/// Whether `id` can name a folder without leaving its parent: not empty, no leading dot,
/// only ASCII letters, digits, `-`, `_` and `.`.
pub fn is_plain_name(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The folder of one task attempt, relative to its job's folder:
/// `stage-S/map-M-attempt-A`.
pub fn attempt_dir(stage: usize, map_partition: usize, attempt: usize) -> PathBuf {
    PathBuf::from(format!("stage-{stage}")).join(format!("map-{map_partition}-attempt-{attempt}"))
}

/// The file of one output partition inside an attempt's folder: `part-P.arrow`.
pub fn piece_file(output_partition: usize) -> String {
    format!("part-{output_partition}.arrow")
}

/// A piece's key relative to a shuffle root: `JOB/stage-S/map-M-attempt-A/part-P.arrow`,
/// with `/` separators on every platform (it is also an object-store key).
pub fn piece_key(
    job_id: &str,
    stage: usize,
    map_partition: usize,
    attempt: usize,
    output_partition: usize,
) -> String {
    format!(
        "{job_id}/stage-{stage}/map-{map_partition}-attempt-{attempt}/{}",
        piece_file(output_partition)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::ShuffleTicket;

    #[test]
    fn plain_names_cannot_leave_their_folder() {
        assert!(is_plain_name("job-1_a.b"));
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "é"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_ticket_names_the_piece_the_writer_made() {
        let ticket = ShuffleTicket {
            job_id: "job-7".into(),
            stage_id: 2,
            map_partition: 5,
            attempt: 1,
            output_partition: 3,
        };
        let key = ticket.checked_key();
        assert_eq!(
            key.as_deref(),
            Ok("job-7/stage-2/map-5-attempt-1/part-3.arrow")
        );
        let written = PathBuf::from("job-7")
            .join(attempt_dir(2, 5, 1))
            .join(piece_file(3));
        assert_eq!(PathBuf::from(key.unwrap_or_default()), written);

        let escape = ShuffleTicket {
            job_id: "../etc".into(),
            ..ticket
        };
        assert!(escape.checked_key().is_err());
    }
}
