//! The metadata side file.
//!
//! The index stores ids and vectors only, so the metadata read from JSON Lines or CSV rows is
//! kept beside it: `INDEX.meta.jsonl` next to a snapshot file, `metadata.jsonl` inside a durable
//! index directory. One line per id that has metadata: `{"id": 7, "metadata": {"k": "v"}}`.
//! `export` and `search` read it back.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use hnsw_batch::metadata::{MetaValue, Metadata};
use serde_json::{Map, Value};

use crate::error::{io_message, CliError, Result};

/// The side file of the index at `index_path` (a snapshot file or a durable directory).
pub fn sidecar_path(index_path: &Path) -> PathBuf {
    if index_path.is_dir() {
        index_path.join("metadata.jsonl")
    } else {
        let mut s = index_path.as_os_str().to_owned();
        s.push(".meta.jsonl");
        PathBuf::from(s)
    }
}

/// Converts metadata to a JSON object.
pub fn to_json(m: &Metadata) -> Value {
    let mut map = Map::new();
    for (k, v) in m {
        let v = match v {
            MetaValue::Str(s) => Value::String(s.clone()),
            MetaValue::Int(i) => Value::from(*i),
            MetaValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            MetaValue::Bool(b) => Value::Bool(*b),
            MetaValue::StrList(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
            _ => Value::Null,
        };
        map.insert(k.clone(), v);
    }
    Value::Object(map)
}

fn from_json(v: &Value) -> Option<Metadata> {
    let mut out = Metadata::new();
    for (k, v) in v.as_object()? {
        let mv = match v {
            Value::String(s) => MetaValue::Str(s.clone()),
            Value::Bool(b) => MetaValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => MetaValue::Int(i),
                _ => MetaValue::Float(n.as_f64()?),
            },
            Value::Null => continue,
            Value::Array(a) => MetaValue::StrList(
                a.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        };
        out.insert(k.clone(), mv);
    }
    Some(out)
}

/// Writes the side file while an index is built.
///
/// For a snapshot file the entries go to `FILE.tmp`, renamed over `FILE` by
/// [`MetaWriter::commit`] once the index itself is saved. For a durable index, whose inserts are
/// on disk as soon as they return, they are appended to the side file directly, after each batch.
pub struct MetaWriter {
    path: PathBuf,
    /// The side file the user will see, named in errors instead of the temporary `path`.
    shown: PathBuf,
    append: bool,
    out: Option<BufWriter<File>>,
    written: usize,
}

impl MetaWriter {
    /// A writer for the side file `final_path`, created (or opened) at the first entry.
    pub fn new(final_path: &Path, append: bool) -> Self {
        let path = if append {
            final_path.to_path_buf()
        } else {
            let mut s = final_path.as_os_str().to_owned();
            s.push(".tmp");
            PathBuf::from(s)
        };
        MetaWriter { path, shown: final_path.to_path_buf(), append, out: None, written: 0 }
    }

    /// Records the metadata of `id` (nothing for empty metadata).
    pub fn write(&mut self, id: u64, m: &Metadata) -> Result<()> {
        if m.is_empty() {
            return Ok(());
        }
        if self.out.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(self.append)
                .truncate(!self.append)
                .open(&self.path)
                .map_err(|e| CliError::index(io_message("create", &self.shown, &e)))?;
            self.out = Some(BufWriter::new(f));
        }
        let line = serde_json::json!({ "id": id, "metadata": to_json(m) });
        let w = self.out.as_mut().expect("created above");
        writeln!(w, "{line}").map_err(|e| CliError::index(io_message("write", &self.shown, &e)))?;
        self.written += 1;
        Ok(())
    }

    /// Pushes buffered entries to the file.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.out.as_mut() {
            w.flush().map_err(|e| CliError::index(io_message("write", &self.shown, &e)))?;
        }
        Ok(())
    }

    /// Entries written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Finishes the side file at `final_path`: renames the temporary file into place, or removes
    /// a stale side file when no row had metadata (appended side files are only flushed).
    pub fn commit(mut self, final_path: &Path) -> Result<()> {
        self.flush()?;
        if self.append {
            return Ok(());
        }
        match self.out.take() {
            Some(w) => {
                drop(w);
                std::fs::rename(&self.path, final_path)
                    .map_err(|e| CliError::index(io_message("rename into", final_path, &e)))
            }
            None => {
                if final_path.exists() {
                    std::fs::remove_file(final_path)
                        .map_err(|e| CliError::index(io_message("remove stale", final_path, &e)))?;
                }
                Ok(())
            }
        }
    }

    /// Drops the temporary file after a failed build (appended entries stay: their vectors are
    /// in the durable index).
    pub fn abandon(mut self) {
        if self.append {
            let _ = self.flush();
        } else if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads the side file of the index at `index_path`; empty when there is none.
pub fn read_sidecar(index_path: &Path) -> Result<HashMap<u64, Metadata>> {
    let path = sidecar_path(index_path);
    let mut out = HashMap::new();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CliError::index(io_message("open", &path, &e))),
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CliError::index(io_message("read", &path, &e)))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = || CliError::index(format!("`{}` line {}: not a metadata entry", path.display(), i + 1));
        let v: Value = serde_json::from_str(&line).map_err(|_| bad())?;
        let id = v.get("id").and_then(Value::as_u64).ok_or_else(bad)?;
        let m = v.get("metadata").and_then(from_json).ok_or_else(bad)?;
        out.insert(id, m);
    }
    Ok(out)
}
