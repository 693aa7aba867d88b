//! The durable spool between producers and the database: every event is appended here (and
//! fsynced) before the writer tries the database, and leaves only once it is stored. A
//! database outage, or a crash, loses nothing: the spool is replayed in order.
//!
//! `events.jsonl` holds one event per line; `offset` records how much of it is stored. When
//! everything is stored the file is emptied.

use crate::store::NewEvent;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Beyond this the spool refuses new events (the disk is not a second database).
pub const MAX_BYTES: u64 = 256 << 20;

/// An event with the unique id it keeps through retries and replays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spooled {
    pub uid: String,
    #[serde(flatten)]
    pub event: NewEvent,
}

impl Spooled {
    pub fn new(event: NewEvent) -> Self {
        Spooled { uid: crate::auth::random_token(), event }
    }
}

pub struct Spool {
    dir: PathBuf,
    file: File,
    len: u64,
    /// Bytes of the file already stored in the database.
    done: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. A line torn by a crash mid-write is cut off.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("events.jsonl");
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut len = file.metadata()?.len();
        let done =
            std::fs::read_to_string(dir.join("offset")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0).min(len);
        // Keep only whole lines: find the end of the last newline.
        if len > 0 {
            let mut reader = BufReader::new(&file);
            reader.seek(SeekFrom::Start(0))?;
            let mut whole = 0u64;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)? as u64;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                whole += n;
            }
            if whole < len {
                tracing::warn!(bytes = len - whole, "audit spool: cutting off a torn last line");
                file.set_len(whole)?;
                len = whole;
            }
        }
        file.seek(SeekFrom::End(0))?;
        Ok(Spool { dir: dir.to_path_buf(), file, len, done })
    }

    /// Events appended but not yet stored, in bytes.
    pub fn backlog(&self) -> u64 {
        self.len - self.done
    }

    /// Appends and fsyncs: when this returns, the events survive a crash.
    pub fn append(&mut self, events: &[Spooled]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        if self.len + buf.len() as u64 > MAX_BYTES {
            return Err(std::io::Error::other(format!("audit spool full ({MAX_BYTES} bytes)")));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Up to `max` events not yet stored, oldest first, each with the offset after it.
    pub fn peek(&mut self, max: usize) -> std::io::Result<Vec<(Spooled, u64)>> {
        let mut reader = BufReader::new(File::open(self.dir.join("events.jsonl"))?);
        reader.seek(SeekFrom::Start(self.done))?;
        let (mut out, mut end, mut line) = (Vec::new(), self.done, String::new());
        while out.len() < max && end < self.len {
            line.clear();
            let n = reader.read_line(&mut line)? as u64;
            if n == 0 {
                break;
            }
            end += n;
            match serde_json::from_str::<Spooled>(line.trim_end()) {
                Ok(e) => out.push((e, end)),
                // Written by us; a line that does not read is skipped, not allowed to block
                // every event behind it.
                Err(e) => tracing::error!(error = %e, "audit spool: unreadable line skipped"),
            }
        }
        Ok(out)
    }

    /// Marks everything before `offset` as stored; empties the spool when all of it is.
    pub fn ack(&mut self, offset: u64) -> std::io::Result<()> {
        self.done = offset.min(self.len);
        if self.done == self.len {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.len = 0;
            self.done = 0;
        }
        // Not fsynced: after a crash the writer skips what the database already holds by uid.
        std::fs::write(self.dir.join("offset"), self.done.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64) -> Spooled {
        Spooled::new(NewEvent {
            at: i,
            kind: "k".into(),
            actor: "ann".into(),
            revision: None,
            service: None,
            summary: format!("e{i}"),
            detail: serde_json::json!({}),
        })
    }

    #[test]
    fn events_survive_a_reopen_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.append(&(1..=5).map(event).collect::<Vec<_>>()).unwrap();
        let first = spool.peek(2).unwrap();
        assert_eq!(first.iter().map(|(e, _)| e.event.at).collect::<Vec<_>>(), vec![1, 2]);
        spool.ack(first[1].1).unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path()).unwrap();
        let rest = spool.peek(10).unwrap();
        assert_eq!(rest.iter().map(|(e, _)| e.event.at).collect::<Vec<_>>(), vec![3, 4, 5]);
        spool.ack(rest[2].1).unwrap();
        assert_eq!(spool.backlog(), 0);
        assert_eq!(std::fs::metadata(dir.path().join("events.jsonl")).unwrap().len(), 0, "emptied once stored");
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.append(&[event(1)]).unwrap();
        drop(spool);
        let mut f = OpenOptions::new().append(true).open(dir.path().join("events.jsonl")).unwrap();
        f.write_all(b"{\"uid\":\"x\",\"at\":").unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.peek(10).unwrap().len(), 1);
        spool.append(&[event(2)]).unwrap();
        assert_eq!(spool.peek(10).unwrap().len(), 2);
    }
}
