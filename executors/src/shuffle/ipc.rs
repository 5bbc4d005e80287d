//! Shuffle pieces as Arrow IPC messages, checked and decoded without copying.
//!
//! A piece is an Arrow IPC stream followed by a trailer of checksums:
//!
//! ```text
//! message 0 | message 1 | ... | end marker (FFFFFFFF 00000000) | crc × n | n | "EMBC"
//! ```
//! where each `crc` is the CRC-32C of one message's metadata (padded, as written after its
//! eight-byte length prefix) followed by its body, in little-endian `u32`s, and `n` counts
//! them. Arrow's own readers stop at the end marker and never see the trailer.
//!
//! - [`ChecksumWriter`] sits under Arrow's `StreamWriter`, follows the messages it writes
//!   and appends the trailer.
//! - [`MessageReader`] reads a file message by message, each body into a buffer of its own
//!   that is filled by the read itself (not zeroed first and copied into).
//! - [`PieceDecoder`] turns messages into batches over those buffers (no copy where they are
//!   aligned), and skips Arrow's validation (UTF-8, offsets, null counts) of a message whose
//!   checksum matches the one its writer recorded: those bytes are the encoding of arrays
//!   that were valid in the writer's memory. A mismatch is an error naming the piece.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::{RecordBatchDecoder, read_dictionary_impl};
use arrow::ipc::{MessageHeader, root_as_message};
use arrow_data::UnsafeFlag;
use bytes::Bytes;

/// The last four bytes of a piece with a checksum trailer.
const TRAILER_MAGIC: &[u8; 4] = b"EMBC";

/// Marks a message length in the IPC stream format (since Arrow 0.15).
const CONTINUATION: [u8; 4] = [0xff; 4];

/// The checksum of one message: its metadata bytes, then its body.
pub(crate) fn message_checksum(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), body)
}

/// A message's checksum as Flight carries it, in `app_metadata` (little-endian).
pub(crate) fn checksum_metadata(checksum: u32) -> Bytes {
    Bytes::copy_from_slice(&checksum.to_le_bytes())
}

/// The checksum in a Flight message's `app_metadata`; `None` when it carries none.
pub(crate) fn checksum_in(app_metadata: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(app_metadata)
        .ok()
        .map(u32::from_le_bytes)
}

/// The metadata length in an eight-byte message prefix; `None` at the end marker.
fn metadata_length(prefix: [u8; 8]) -> std::io::Result<Option<usize>> {
    if prefix[..4] != CONTINUATION {
        return Err(invalid(
            "a message without the continuation marker (legacy IPC format)".into(),
        ));
    }
    let length = i32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    match usize::try_from(length) {
        Ok(0) => Ok(None),
        Ok(length) => Ok(Some(length)),
        Err(_) => Err(invalid(format!("a message length of {length}"))),
    }
}

/// The body length that the message metadata `header` announces.
fn body_length(header: &[u8]) -> std::io::Result<usize> {
    let message = root_as_message(header)
        .map_err(|e| invalid(format!("an unreadable message header: {e}")))?;
    usize::try_from(message.bodyLength())
        .map_err(|_| invalid(format!("a body length of {}", message.bodyLength())))
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Where a [`ChecksumWriter`] is in the stream it follows.
enum Scan {
    /// Reading a message's eight-byte prefix.
    Prefix { bytes: [u8; 8], filled: usize },
    /// Reading its metadata (needed whole, to learn the body length).
    Header { bytes: Vec<u8>, length: usize },
    /// Reading its body.
    Body { left: usize },
    /// Past the end marker.
    Done,
}

/// A writer under Arrow's `StreamWriter` that records the checksum of every message
/// written through it and appends them, as the trailer, in [`ChecksumWriter::finish`].
pub(crate) struct ChecksumWriter<W: Write> {
    inner: W,
    scan: Scan,
    crc: u32,
    checksums: Vec<u32>,
}

impl<W: Write> ChecksumWriter<W> {
    /// Follows the stream written to `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            scan: Scan::Prefix {
                bytes: [0; 8],
                filled: 0,
            },
            crc: 0,
            checksums: Vec::new(),
        }
    }

    /// Appends the trailer once the stream's end marker is written; returns the writer
    /// under it.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        if !matches!(self.scan, Scan::Done) {
            return Err(invalid("the stream was not finished".into()));
        }
        let count = u32::try_from(self.checksums.len())
            .map_err(|_| invalid("more than 2^32 messages".into()))?;
        let mut trailer = Vec::with_capacity(4 * self.checksums.len() + 8);
        for crc in &self.checksums {
            trailer.extend_from_slice(&crc.to_le_bytes());
        }
        trailer.extend_from_slice(&count.to_le_bytes());
        trailer.extend_from_slice(TRAILER_MAGIC);
        self.inner.write_all(&trailer)?;
        Ok(self.inner)
    }

    /// Follows `bytes`, just written, through the message structure.
    fn follow(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Prefix {
                    bytes: prefix,
                    filled,
                } => {
                    let take = (8 - *filled).min(bytes.len());
                    prefix[*filled..*filled + take].copy_from_slice(&bytes[..take]);
                    *filled += take;
                    bytes = &bytes[take..];
                    if *filled == 8 {
                        self.scan = match metadata_length(*prefix)? {
                            Some(length) => Scan::Header {
                                bytes: Vec::with_capacity(length),
                                length,
                            },
                            None => Scan::Done,
                        };
                    }
                }
                Scan::Header {
                    bytes: header,
                    length,
                } => {
                    let take = (*length - header.len()).min(bytes.len());
                    header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if header.len() == *length {
                        self.crc = crc32c::crc32c(header);
                        let left = body_length(header)?;
                        self.scan = Scan::Body { left };
                        if left == 0 {
                            self.end_message();
                        }
                    }
                }
                Scan::Body { left } => {
                    let take = (*left).min(bytes.len());
                    self.crc = crc32c::crc32c_append(self.crc, &bytes[..take]);
                    *left -= take;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.end_message();
                    }
                }
                Scan::Done => {
                    return Err(invalid("bytes written after the end marker".into()));
                }
            }
        }
        Ok(())
    }

    fn end_message(&mut self) {
        self.checksums.push(self.crc);
        self.scan = Scan::Prefix {
            bytes: [0; 8],
            filled: 0,
        };
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.follow(&buf[..written])?;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The number of checksums a piece of `length` bytes ending in `last` has in its trailer;
/// `None` for a piece without one.
fn trailer_count(last: [u8; 8], length: u64) -> Option<usize> {
    if &last[4..] != TRAILER_MAGIC {
        return None;
    }
    let count = u32::from_le_bytes([last[0], last[1], last[2], last[3]]);
    // The trailer follows a stream of at least the end marker.
    (u64::from(count) * 4 + 16 <= length).then_some(count as usize)
}

/// The checksums of a trailer's table.
fn parse_table(table: &[u8]) -> Vec<u32> {
    table
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The checksums in the trailer of a piece held whole in memory (`None` if it has none).
fn trailer_of(piece: &[u8]) -> Option<Vec<u32>> {
    let end = piece.len().checked_sub(8)?;
    let last: [u8; 8] = piece[end..].try_into().ok()?;
    let count = trailer_count(last, piece.len() as u64)?;
    Some(parse_table(&piece[end - count * 4..end]))
}

/// The checksums in the trailer of the piece `file`, `length` bytes long (`None` if it has
/// none); the file is left at its start.
pub(crate) fn read_trailer<F: Read + Seek>(
    file: &mut F,
    length: u64,
) -> std::io::Result<Option<Vec<u32>>> {
    if length < 16 {
        return Ok(None);
    }
    let mut last = [0u8; 8];
    file.seek(SeekFrom::Start(length - 8))?;
    file.read_exact(&mut last)?;
    let checksums = match trailer_count(last, length) {
        None => None,
        Some(count) => {
            let mut table = vec![0u8; count * 4];
            file.seek(SeekFrom::Start(length - 8 - table.len() as u64))?;
            file.read_exact(&mut table)?;
            Some(parse_table(&table))
        }
    };
    file.seek(SeekFrom::Start(0))?;
    Ok(checksums)
}

/// One IPC message: its metadata (as written, padding included) and its body.
pub(crate) struct Message {
    pub header: Bytes,
    pub body: Bytes,
}

/// Reads the messages of an IPC stream up to its end marker.
pub(crate) struct MessageReader<R: Read> {
    reader: R,
    done: bool,
}

impl<R: Read> MessageReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            done: false,
        }
    }

    /// The next message; `None` after the end marker. Running out of bytes before it means
    /// the stream is cut short, and is an error.
    pub(crate) fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        if self.done {
            return Ok(None);
        }
        let mut prefix = [0u8; 8];
        self.reader.read_exact(&mut prefix)?;
        let Some(length) = metadata_length(prefix)? else {
            self.done = true;
            return Ok(None);
        };
        let header = self.read_bytes(length)?;
        let body = self.read_bytes(body_length(&header)?)?;
        Ok(Some(Message {
            header: header.into(),
            body: body.into(),
        }))
    }

    /// Exactly `length` bytes, read straight into a buffer that is not zeroed first.
    fn read_bytes(&mut self, length: usize) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(length);
        (&mut self.reader)
            .take(length as u64)
            .read_to_end(&mut bytes)?;
        if bytes.len() != length {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(bytes)
    }
}

/// The messages and trailer checksums of a whole piece held in memory, as slices of it.
pub(crate) fn split_piece(piece: &Bytes) -> std::io::Result<(Vec<Message>, Option<Vec<u32>>)> {
    let checksums = trailer_of(piece);
    let mut messages = Vec::new();
    let mut at = 0;
    loop {
        let prefix: [u8; 8] = piece
            .get(at..at + 8)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        at += 8;
        let Some(length) = metadata_length(prefix)? else {
            return Ok((messages, checksums));
        };
        let header = slice(piece, at, length)?;
        at += length;
        let body = slice(piece, at, body_length(&header)?)?;
        at += body.len();
        messages.push(Message { header, body });
    }
}

fn slice(piece: &Bytes, at: usize, length: usize) -> std::io::Result<Bytes> {
    match at.checked_add(length) {
        Some(end) if end <= piece.len() => Ok(piece.slice(at..end)),
        _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Decodes the messages of one piece into record batches.
#[derive(Default)]
pub(crate) struct PieceDecoder {
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
    /// Messages decoded so far (the index of the next one's checksum).
    messages: usize,
    /// Messages whose validation was skipped because their checksum matched.
    pub trusted: usize,
}

impl PieceDecoder {
    /// The batch in `message` (`None` for a schema or dictionary message). With `checksum`,
    /// the message's bytes are checked against it first; a match skips validation.
    pub(crate) fn decode(
        &mut self,
        header: &[u8],
        body: Bytes,
        checksum: Option<u32>,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        let index = self.messages;
        self.messages += 1;
        let mut skip = UnsafeFlag::new();
        if let Some(expected) = checksum {
            let found = message_checksum(header, &body);
            if found != expected {
                return Err(ArrowError::IpcError(format!(
                    "message {index} is corrupt: its checksum is {found:08x}, the writer's was \
                     {expected:08x}"
                )));
            }
            // Allowed by executors/Cargo.toml (the other unsafe block is cli/src/allocator.rs).
            // SAFETY: these bytes are, checksum for checksum, those that Ember's writer
            // encoded from arrays that were valid in its memory (Arrow's own encoder), so
            // what Arrow would check here (UTF-8, offsets, null counts) already holds.
            #[allow(unsafe_code)]
            unsafe {
                skip.set(true)
            };
            self.trusted += 1;
        }
        let message = root_as_message(header)
            .map_err(|e| ArrowError::IpcError(format!("an unreadable message header: {e}")))?;
        let body = Buffer::from(body);
        let version = message.version();
        match message.header_type() {
            MessageHeader::Schema => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| ArrowError::IpcError("a schema message without one".into()))?;
                self.schema = Some(std::sync::Arc::new(arrow::ipc::convert::fb_to_schema(
                    schema,
                )));
                Ok(None)
            }
            MessageHeader::RecordBatch => {
                let batch = message.header_as_record_batch().ok_or_else(|| {
                    ArrowError::IpcError("a record batch message without one".into())
                })?;
                let schema = self.schema()?;
                let batch = RecordBatchDecoder::try_new(
                    &body,
                    batch,
                    schema,
                    &self.dictionaries,
                    &version,
                )?
                .with_skip_validation(skip)
                .read_record_batch()?;
                Ok(Some(batch))
            }
            MessageHeader::DictionaryBatch => {
                let dictionary = message.header_as_dictionary_batch().ok_or_else(|| {
                    ArrowError::IpcError("a dictionary message without one".into())
                })?;
                let schema = self.schema()?;
                read_dictionary_impl(
                    &body,
                    dictionary,
                    &schema,
                    &mut self.dictionaries,
                    &version,
                    false,
                    skip,
                )?;
                Ok(None)
            }
            other => Err(ArrowError::IpcError(format!(
                "an unexpected message type {other:?}"
            ))),
        }
    }

    fn schema(&self) -> Result<SchemaRef, ArrowError> {
        self.schema
            .clone()
            .ok_or_else(|| ArrowError::IpcError("a batch before the schema".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;
    use std::sync::Arc;

    fn batches() -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("v", DataType::Utf8View, true),
        ]));
        (0..3)
            .map(|b| {
                let keys = Int64Array::from_iter_values((0..100).map(|i| b * 100 + i));
                let strings = StringArray::from_iter((0..100).map(|i| {
                    (i % 7 != 0).then(|| format!("row {i} of batch {b}, long enough to spill"))
                }));
                let views = StringViewArray::from_iter((0..100).map(|i| {
                    (i % 5 != 0).then(|| format!("a string view that is not inlined {i}"))
                }));
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(keys), Arc::new(strings), Arc::new(views)],
                )
                .expect("batch")
            })
            .collect()
    }

    /// The bytes of a piece of `batches`, with the trailer when `checksummed`.
    fn piece(batches: &[RecordBatch], checksummed: bool) -> Vec<u8> {
        let schema = batches[0].schema();
        if !checksummed {
            let mut writer = StreamWriter::try_new(Vec::new(), &schema).expect("writer");
            for batch in batches {
                writer.write(batch).expect("write");
            }
            writer.finish().expect("finish");
            return writer.into_inner().expect("inner");
        }
        let mut writer =
            StreamWriter::try_new(ChecksumWriter::new(Vec::new()), &schema).expect("writer");
        for batch in batches {
            writer.write(batch).expect("write");
        }
        writer.finish().expect("finish");
        writer
            .into_inner()
            .expect("inner")
            .finish()
            .expect("trailer")
    }

    /// Decodes `bytes` message by message from a reader, as a file is read.
    fn read_back(bytes: &[u8]) -> Result<(Vec<RecordBatch>, usize), ArrowError> {
        let mut cursor = std::io::Cursor::new(bytes);
        let checksums = read_trailer(&mut cursor, bytes.len() as u64)?;
        let mut reader = MessageReader::new(cursor);
        let mut decoder = PieceDecoder::default();
        let mut out = Vec::new();
        let mut index = 0;
        while let Some(message) = reader.next_message()? {
            let checksum = checksums.as_ref().and_then(|c| c.get(index).copied());
            index += 1;
            out.extend(decoder.decode(&message.header, message.body, checksum)?);
        }
        Ok((out, decoder.trusted))
    }

    #[test]
    fn a_checksummed_piece_reads_back_equal_and_skips_validation() {
        let written = batches();
        let bytes = piece(&written, true);
        let (read, trusted) = read_back(&bytes).expect("reads");
        assert_eq!(read, written);
        // The schema and the three batches were all checked against their checksums.
        assert_eq!(trusted, 4);
        // Arrow's own reader stops at the end marker and never sees the trailer.
        let arrow: Vec<RecordBatch> =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&bytes), None)
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("batches");
        assert_eq!(arrow, written);
        // The same piece held whole in memory splits into the same messages.
        let whole = Bytes::from(bytes);
        let (messages, checksums) = split_piece(&whole).expect("splits");
        let checksums = checksums.expect("a trailer");
        assert_eq!(messages.len(), checksums.len());
        let mut decoder = PieceDecoder::default();
        let mut from_memory = Vec::new();
        for (message, checksum) in messages.into_iter().zip(checksums) {
            from_memory.extend(
                decoder
                    .decode(&message.header, message.body, Some(checksum))
                    .expect("decodes"),
            );
        }
        assert_eq!(from_memory, written);
    }

    #[test]
    fn a_piece_without_a_trailer_is_read_and_validated() {
        let written = batches();
        let bytes = piece(&written, false);
        let (read, trusted) = read_back(&bytes).expect("reads");
        assert_eq!(read, written);
        assert_eq!(trusted, 0);
    }

    #[test]
    fn a_flipped_byte_is_caught_by_its_checksum() {
        let written = batches();
        let mut bytes = piece(&written, true);
        // A byte of the string data in the last batch's body, well before the trailer.
        let at = bytes.len() - 4 * 4 - 8 - 8 - 100;
        bytes[at] ^= 0x40;
        let error = read_back(&bytes).expect_err("a corrupt piece");
        assert!(
            error.to_string().contains("message 3 is corrupt"),
            "{error}"
        );
    }

    #[test]
    fn invalid_utf8_without_a_checksum_is_still_refused() {
        let written = batches();
        let mut bytes = piece(&written, false);
        // Turn a letter of the last string of the Utf8 column into a lone continuation byte.
        let needle = b"row 99 of batch 2";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the string is in the piece");
        bytes[at] = 0x80;
        let error = read_back(&bytes).expect_err("invalid UTF-8");
        assert!(error.to_string().to_lowercase().contains("utf"), "{error}");
    }

    #[test]
    fn a_piece_cut_short_is_an_error() {
        let bytes = piece(&batches(), false);
        let cut = &bytes[..bytes.len() / 2];
        assert!(read_back(cut).is_err());
        assert!(split_piece(&Bytes::copy_from_slice(cut)).is_err());
    }
}
