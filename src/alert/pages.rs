//! A bounded walk over the page headers of a Parquet file, before the parquet crate reads it.
//!
//! The parquet crate trusts the sizes a page header declares: a 1.7 kB file whose header declares
//! a 2 GiB page (or a dictionary of 10^8 values) makes it allocate and zero ~2 GB, and a 2 kB
//! header holding a Thrift list that claims billions of elements makes it skip them one by one
//! for tens of seconds (both found by `benches/fuzz.rs`). Neither size is visible through the
//! crate's API, so this module reads each column chunk's page headers itself (Thrift compact
//! protocol, every length bounded by the bytes that are left) and rejects a file whose pages do
//! not fit their column chunk, exceed [`MAX_PAGE_BYTES`], or declare more dictionary values than
//! their bytes can hold. Only sizes are read; the values are left to the parquet crate.

use parquet::file::metadata::ParquetMetaData;

/// The largest page (uncompressed) accepted. Writers cut pages at ~1 MiB; a page over this is
/// either a single value of this size (no alert field is) or a lie.
pub const MAX_PAGE_BYTES: i64 = 256 << 20;

/// Nesting allowed inside a page header (the real ones nest three deep: statistics in a data
/// page header in the page header).
const MAX_DEPTH: usize = 16;

/// Walks the file's footer (the Thrift `FileMetaData` before the closing length and `PAR1`)
/// with the same bounds as the page headers, before the parquet crate parses it: a footer
/// declaring containers larger than itself (which the crate skips element by element: seconds
/// for a 2 kB file, also found by `benches/fuzz.rs`) or nesting deeper than any real one is
/// refused at once. Files without the trailer are left to the crate's own error.
///
/// `read` gives the range `start..end` of the file's `file_len` bytes.
pub fn check_footer<B: AsRef<[u8]>>(
    file_len: u64,
    mut read: impl FnMut(u64, u64) -> Result<B, String>,
) -> Result<(), String> {
    let n = file_len;
    if n < 12 {
        return Ok(());
    }
    let tail = read(n - 8, n)?;
    let tail = tail.as_ref();
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Ok(());
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&tail[..4]);
    let len = u64::from(u32::from_le_bytes(len));
    if len > n - 8 {
        return Ok(());
    }
    let footer = read(n - 8 - len, n - 8)?;
    let mut reader = Compact {
        bytes: footer.as_ref(),
        at: 0,
    };
    reader.skip(STRUCT, 0).map_err(|e| format!("footer: {e}"))
}

/// Checks the page headers of every column chunk of row group `g` against the chunk and the
/// file (see the module documentation), in a file of `file_len` bytes whose range `start..end`
/// `read` gives (a range is asked for only once it is known to lie in the file), so that a file
/// read a row group at a time is checked as it is read. The error says which chunk and page,
/// for a `DecodeError::Parquet`.
pub fn check_group<B: AsRef<[u8]>>(
    metadata: &ParquetMetaData,
    g: usize,
    file_len: u64,
    mut read: impl FnMut(u64, u64) -> Result<B, String>,
) -> Result<(), String> {
    for (c, chunk) in metadata.row_group(g).columns().iter().enumerate() {
        let start = match chunk.dictionary_page_offset() {
            Some(offset) => offset,
            None => chunk.data_page_offset(),
        };
        let length = chunk.compressed_size();
        let (start, end) = match (u64::try_from(start), u64::try_from(length)) {
            (Ok(s), Ok(l)) if s.checked_add(l).is_some_and(|end| end <= file_len) => (s, s + l),
            _ => {
                return Err(format!(
                    "row group {g} column {c}: column chunk at {start} of {length} bytes \
                     lies outside the file ({file_len} bytes)"
                ));
            }
        };
        let bytes = read(start, end).map_err(|e| format!("row group {g} column {c}: {e}"))?;
        check_chunk(bytes.as_ref(), chunk.uncompressed_size())
            .map_err(|e| format!("row group {g} column {c}: {e}"))?;
    }
    Ok(())
}

/// Walks the pages of one column chunk (its bytes, from its first page header to its end).
fn check_chunk(chunk: &[u8], declared_uncompressed: i64) -> Result<(), String> {
    let mut at = 0usize;
    let mut uncompressed_total: i64 = 0;
    let mut page = 0usize;
    while at < chunk.len() {
        let mut reader = Compact {
            bytes: &chunk[at..],
            at: 0,
        };
        let header = reader
            .page_header()
            .map_err(|e| format!("page {page} at byte {at} of the chunk: {e}"))?;
        let header_len = reader.at;
        let body_end = at
            .checked_add(header_len)
            .and_then(|a| a.checked_add(usize::try_from(header.compressed).ok()?))
            .filter(|&e| e <= chunk.len() && header.compressed >= 0);
        let Some(body_end) = body_end else {
            return Err(format!(
                "page {page}: {} compressed bytes declared, {} left in the column chunk",
                header.compressed,
                chunk.len() - at - header_len
            ));
        };
        if !(0..=MAX_PAGE_BYTES).contains(&header.uncompressed) {
            return Err(format!(
                "page {page}: {} uncompressed bytes declared (at most {MAX_PAGE_BYTES})",
                header.uncompressed
            ));
        }
        if let Some(values) = header.dictionary_values {
            if !(0..=header.uncompressed.max(header.compressed)).contains(&values) {
                return Err(format!(
                    "page {page}: a dictionary of {values} values in {} bytes",
                    header.uncompressed
                ));
            }
        }
        uncompressed_total += header.uncompressed + header_len as i64;
        if uncompressed_total > declared_uncompressed.max(0) {
            return Err(format!(
                "page {page}: the pages hold more than the {declared_uncompressed} uncompressed \
                 bytes the file's metadata declares for the column chunk"
            ));
        }
        at = body_end;
        page += 1;
    }
    Ok(())
}

/// The sizes of one page header.
struct PageSizes {
    uncompressed: i64,
    compressed: i64,
    dictionary_values: Option<i64>,
}

/// A reader of the Thrift compact protocol over a byte slice, every length bounded by the bytes
/// left.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

// Thrift compact protocol type codes.
const STOP: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

impl Compact<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("the page header ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn skip_bytes(&mut self, n: usize) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "the page header declares {n} bytes, {} left",
                self.left()
            ));
        }
        self.at += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint in the page header runs over 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// Reads the next field header of a struct: `None` at its end, else (field id, type).
    fn field(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        let kind = b & 0x0f;
        if kind == STOP {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?
        } else {
            last_id.saturating_add(i16::from(delta))
        };
        *last_id = id;
        Ok(Some((id, kind)))
    }

    /// An i32 field's value (`kind` must be I32).
    fn int(&mut self, kind: u8) -> Result<i64, String> {
        if kind != I32 {
            return Err(format!("a size field of Thrift type {kind}, not i32"));
        }
        self.zigzag()
    }

    /// Skips one value of type `kind`, every element of a container at least one byte.
    fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("the page header nests too deep".into());
        }
        match kind {
            TRUE | FALSE => Ok(()),
            BYTE => self.skip_bytes(1),
            I16 | I32 | I64 => self.varint().map(|_| ()),
            DOUBLE => self.skip_bytes(8),
            UUID => self.skip_bytes(16),
            BINARY => {
                let n = self.varint()?;
                self.skip_bytes(usize::try_from(n).unwrap_or(usize::MAX))
            }
            LIST | SET => {
                let head = self.byte()?;
                let element = head & 0x0f;
                let n = match head >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.elements(n, &[element], depth)
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                self.elements(n, &[types >> 4, types & 0x0f], depth)
            }
            STRUCT => {
                let mut last = 0i16;
                while let Some((_, field)) = self.field(&mut last)? {
                    self.skip(field, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other} in the page header")),
        }
    }

    fn elements(&mut self, n: u64, kinds: &[u8], depth: usize) -> Result<(), String> {
        // Every element takes at least one byte (a boolean in a list takes one), so a count over
        // the bytes left is a lie, caught before any of it is walked.
        if n > self.left() as u64 {
            return Err(format!(
                "a Thrift container of {n} elements in {} bytes",
                self.left()
            ));
        }
        for _ in 0..n {
            for &kind in kinds {
                match kind {
                    TRUE | FALSE => self.skip_bytes(1)?,
                    kind => self.skip(kind, depth + 1)?,
                }
            }
        }
        Ok(())
    }

    /// Reads a `PageHeader` struct: the two sizes and a dictionary page's value count.
    fn page_header(&mut self) -> Result<PageSizes, String> {
        let mut sizes = PageSizes {
            uncompressed: -1,
            compressed: -1,
            dictionary_values: None,
        };
        let mut last = 0i16;
        while let Some((id, kind)) = self.field(&mut last)? {
            match (id, kind) {
                (2, _) => sizes.uncompressed = self.int(kind)?,
                (3, _) => sizes.compressed = self.int(kind)?,
                (7, STRUCT) => {
                    let mut inner = 0i16;
                    while let Some((id, kind)) = self.field(&mut inner)? {
                        if id == 1 {
                            sizes.dictionary_values = Some(self.int(kind)?);
                        } else {
                            self.skip(kind, 2)?;
                        }
                    }
                }
                (_, kind) => self.skip(kind, 1)?,
            }
        }
        if sizes.uncompressed < 0 || sizes.compressed < 0 {
            return Err("a page header without its sizes".into());
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page header as Thrift compact bytes: type, sizes, and a dictionary header.
    fn header(uncompressed: i64, compressed: i64, dictionary: Option<i64>) -> Vec<u8> {
        fn zigzag(v: i64, out: &mut Vec<u8>) {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    out.push(b);
                    break;
                }
                out.push(b | 0x80);
            }
        }
        let mut out = vec![0x15];
        zigzag(if dictionary.is_some() { 2 } else { 0 }, &mut out);
        out.push(0x15);
        zigzag(uncompressed, &mut out);
        out.push(0x15);
        zigzag(compressed, &mut out);
        if let Some(values) = dictionary {
            out.push(0x4c); // field 7 (delta 4), struct
            out.push(0x15);
            zigzag(values, &mut out);
            out.push(0);
        }
        out.push(0);
        out
    }

    fn chunk(pages: &[(i64, usize, Option<i64>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(uncompressed, body, dictionary) in pages {
            out.extend(header(uncompressed, body as i64, dictionary));
            out.extend(std::iter::repeat_n(7u8, body));
        }
        out
    }

    #[test]
    fn pages_that_fit_their_chunk_pass() {
        let bytes = chunk(&[(40, 20, Some(5)), (100, 30, None), (0, 0, None)]);
        assert_eq!(check_chunk(&bytes, 10_000), Ok(()));
    }

    #[test]
    fn a_page_larger_than_the_chunk_declares_is_rejected() {
        let bytes = chunk(&[(2_000_000, 20, None)]);
        let err = check_chunk(&bytes, 1_000).unwrap_err();
        assert!(
            err.contains("uncompressed bytes the file's metadata declares"),
            "{err}"
        );
        let bytes = chunk(&[(2_000_000_000, 20, None)]);
        let err = check_chunk(&bytes, i64::MAX).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn a_body_running_past_the_chunk_is_rejected() {
        let mut bytes = chunk(&[(40, 20, None)]);
        bytes.truncate(bytes.len() - 1);
        let err = check_chunk(&bytes, 10_000).unwrap_err();
        assert!(err.contains("compressed bytes declared"), "{err}");
    }

    #[test]
    fn a_dictionary_of_more_values_than_bytes_is_rejected() {
        let bytes = chunk(&[(40, 20, Some(100_000_000))]);
        let err = check_chunk(&bytes, 10_000).unwrap_err();
        assert!(err.contains("a dictionary of 100000000 values"), "{err}");
    }

    #[test]
    fn a_list_longer_than_the_bytes_left_is_rejected_at_once() {
        // Field 8 (a data page header v2, a struct) holding field 1 as a list of 2^31 structs.
        let mut bytes = header(40, 0, None);
        bytes.pop();
        bytes.extend([0x5c, 0x19, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 0]);
        let err = check_chunk(&bytes, 10_000).unwrap_err();
        assert!(err.contains("elements in"), "{err}");
    }
}
