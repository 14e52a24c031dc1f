//! An in-memory driver for tests. Everything it holds is lost with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use super::{BoxReader, DriverError, DriverWriter, FileInfo, StorageDriver, validate_key};

/// Keys live in a sorted map; "directories" are implied by key prefixes.
#[derive(Clone, Default)]
pub struct MemoryDriver {
    files: Arc<RwLock<BTreeMap<String, Bytes>>>,
}

impl MemoryDriver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key held, for tests that check nothing is left behind.
    pub fn keys(&self) -> Vec<String> {
        self.files.read().keys().cloned().collect()
    }

    fn under(key: &str) -> String {
        format!("{key}/")
    }
}

struct MemoryWriter {
    files: Arc<RwLock<BTreeMap<String, Bytes>>>,
    key: String,
    buf: BytesMut,
}

#[async_trait]
impl DriverWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriverError> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    async fn commit(self: Box<Self>) -> Result<(), DriverError> {
        self.files.write().insert(self.key, self.buf.freeze());
        Ok(())
    }

    async fn cancel(self: Box<Self>) -> Result<(), DriverError> {
        self.files.write().remove(&self.key);
        Ok(())
    }
}

#[async_trait]
impl StorageDriver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get_content(&self, key: &str) -> Result<Bytes, DriverError> {
        validate_key(key)?;
        self.files
            .read()
            .get(key)
            .cloned()
            .ok_or_else(|| DriverError::NotFound(key.to_owned()))
    }

    async fn put_content(&self, key: &str, data: Bytes) -> Result<(), DriverError> {
        validate_key(key)?;
        self.files.write().insert(key.to_owned(), data);
        Ok(())
    }

    async fn reader(&self, key: &str, offset: u64) -> Result<BoxReader, DriverError> {
        let data = self.get_content(key).await?;
        if offset > data.len() as u64 {
            return Err(DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size: data.len() as u64,
            });
        }
        Ok(Box::pin(std::io::Cursor::new(
            data.slice(offset as usize..),
        )))
    }

    async fn writer(&self, key: &str, offset: u64) -> Result<Box<dyn DriverWriter>, DriverError> {
        validate_key(key)?;
        let existing = self.files.read().get(key).cloned().unwrap_or_default();
        if offset > existing.len() as u64 {
            return Err(DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size: existing.len() as u64,
            });
        }
        let mut buf = BytesMut::with_capacity(offset as usize);
        buf.extend_from_slice(&existing[..offset as usize]);
        Ok(Box::new(MemoryWriter {
            files: self.files.clone(),
            key: key.to_owned(),
            buf,
        }))
    }

    async fn stat(&self, key: &str) -> Result<FileInfo, DriverError> {
        validate_key(key)?;
        let files = self.files.read();
        if let Some(data) = files.get(key) {
            return Ok(FileInfo {
                size: data.len() as u64,
                is_dir: false,
                modified: None,
            });
        }
        let prefix = Self::under(key);
        if files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
        {
            return Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            });
        }
        Err(DriverError::NotFound(key.to_owned()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, DriverError> {
        validate_key(prefix)?;
        let under = Self::under(prefix);
        let files = self.files.read();
        let mut out: Vec<String> = Vec::new();
        for (k, _) in files.range(under.clone()..) {
            let Some(rest) = k.strip_prefix(&under) else {
                break;
            };
            let child = format!("{under}{}", rest.split('/').next().unwrap_or(rest));
            if out.last() != Some(&child) {
                out.push(child);
            }
        }
        Ok(out)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriverError> {
        validate_key(from)?;
        validate_key(to)?;
        let mut files = self.files.write();
        let from_dir = Self::under(from);
        let moved: Vec<String> = files
            .keys()
            .filter(|k| *k == from || k.starts_with(&from_dir))
            .cloned()
            .collect();
        if moved.is_empty() {
            return Err(DriverError::NotFound(from.to_owned()));
        }
        let to_dir = Self::under(to);
        files.retain(|k, _| k != to && !k.starts_with(&to_dir));
        for k in moved {
            let v = files.remove(&k).expect("listed above");
            let new_key = format!("{to}{}", &k[from.len()..]);
            files.insert(new_key, v);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), DriverError> {
        validate_key(key)?;
        let mut files = self.files.write();
        let dir = Self::under(key);
        let before = files.len();
        files.retain(|k, _| k != key && !k.starts_with(&dir));
        if files.len() == before {
            return Err(DriverError::NotFound(key.to_owned()));
        }
        Ok(())
    }
}
