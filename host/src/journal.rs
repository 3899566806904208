//! The accept journal: an append-only file that makes a newly accepted workload
//! durable with one small append and one `fdatasync`, instead of a durable redb
//! commit (which rewrites and syncs several B-tree pages).
//!
//! Every entry carries a sequence number. The store keeps, in the same redb
//! transaction as its data, the highest sequence that a *durable* redb commit already
//! contains (`applied`). On open, entries above `applied` are replayed into redb
//! (only when their name is absent: a present record is newer), then checkpointed.
//! So an entry is never applied twice and never resurrects a record that a later
//! durable commit removed.
//!
//! Entry layout (little endian): `len: u32` · `crc32(seq ‖ payload): u32` ·
//! `seq: u64` · `payload: [u8; len]`. A torn or corrupt tail (a crash during the
//! append) ends the replay; everything before it was synced.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 16;
/// A payload larger than this is treated as corruption (records are a few KiB).
const MAX_ENTRY: u32 = 16 << 20;

/// Journal I/O failure, with the file.
#[derive(Debug, thiserror::Error)]
#[error("accept journal {path}: {op}: {source}")]
pub struct JournalError {
    path: PathBuf,
    op: &'static str,
    #[source]
    source: std::io::Error,
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    entries: usize,
}

/// One replayed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number.
    pub seq: u64,
    /// The bytes appended.
    pub payload: Vec<u8>,
}

impl Journal {
    /// Open (or create) the journal and read every intact entry.
    pub fn open(path: &Path) -> Result<(Self, Vec<Entry>), JournalError> {
        let err = |op| {
            let path = path.to_path_buf();
            move |source| JournalError { path, op, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(err("open"))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(err("read"))?;
        let entries = parse(&buf);
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let j = Self {
            path: path.to_path_buf(),
            file,
            next_seq,
            entries: entries.len(),
        };
        Ok((j, entries))
    }

    /// Entries appended since the last truncation.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing was appended since the last truncation.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The sequence the next entry gets; every entry so far is below it.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Never hand out a sequence at or below `seq` (after a checkpoint recorded it).
    pub fn bump_past(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// Append `payloads` and `fdatasync` once. Returns the last sequence used.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> Result<u64, JournalError> {
        let mut buf = Vec::new();
        let mut seq = self.next_seq;
        for p in payloads {
            let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
            let mut h = crc32fast::Hasher::new();
            h.update(&seq.to_le_bytes());
            h.update(p);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&h.finalize().to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(p);
            seq += 1;
        }
        let err = |op| {
            let path = self.path.clone();
            move |source| JournalError { path, op, source }
        };
        self.file.write_all(&buf).map_err(err("append"))?;
        self.file.sync_data().map_err(err("fdatasync"))?;
        self.next_seq = seq;
        self.entries += payloads.len();
        Ok(seq - 1)
    }

    /// Drop every entry (a durable store commit now holds them all). Not synced: a
    /// truncation lost in a crash only brings back entries the store already has,
    /// and replay skips those by sequence.
    pub fn truncate(&mut self) -> Result<(), JournalError> {
        self.file.set_len(0).map_err(|source| JournalError {
            path: self.path.clone(),
            op: "truncate",
            source,
        })?;
        self.entries = 0;
        Ok(())
    }
}

fn parse(buf: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while buf.len() - at >= HEADER {
        let word = |i: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            w.copy_from_slice(&buf[at + i..at + i + 4]);
            w
        };
        let len = u32::from_le_bytes(word(0));
        let crc = u32::from_le_bytes(word(4));
        let mut s = [0u8; 8];
        s.copy_from_slice(&buf[at + 8..at + 16]);
        let seq = u64::from_le_bytes(s);
        if len > MAX_ENTRY || buf.len() - at - HEADER < len as usize {
            break;
        }
        let payload = &buf[at + HEADER..at + HEADER + len as usize];
        let mut h = crc32fast::Hasher::new();
        h.update(&seq.to_le_bytes());
        h.update(payload);
        if h.finalize() != crc || out.last().is_some_and(|e: &Entry| e.seq >= seq) {
            break;
        }
        out.push(Entry {
            seq,
            payload: payload.to_vec(),
        });
        at += HEADER + len as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let (mut j, e) = Journal::open(&p).unwrap();
        assert!(e.is_empty());
        assert_eq!(j.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap(), 2);
        assert_eq!(j.append(&[b"three".to_vec()]).unwrap(), 3);
        drop(j);
        // A crash in the middle of the next append: half a header, then garbage.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (j, e) = Journal::open(&p).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.seq, e.payload.clone())).collect();
        assert_eq!(
            got,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
        assert_eq!(j.next_seq(), 4);
    }

    #[test]
    fn a_flipped_byte_ends_the_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"aaaa".to_vec(), b"bbbb".to_vec()]).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let (_, e) = Journal::open(&p).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].payload, b"aaaa");
    }

    #[test]
    fn truncation_keeps_sequences_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(&[b"x".to_vec()]).unwrap();
        j.truncate().unwrap();
        assert!(j.is_empty());
        assert_eq!(j.append(&[b"y".to_vec()]).unwrap(), 2);
        drop(j);
        let (mut j, e) = Journal::open(&p).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].seq, 2);
        // Reopened empty after a checkpoint: the store's applied mark moves us on.
        j.truncate().unwrap();
        drop(j);
        let (mut j, e) = Journal::open(&p).unwrap();
        assert!(e.is_empty());
        j.bump_past(2);
        assert_eq!(j.append(&[b"z".to_vec()]).unwrap(), 3);
    }
}
