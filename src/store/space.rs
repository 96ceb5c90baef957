//! Key spaces: every record lives in one sled tree, each kind under its own one-byte
//! prefix, so a change touching several kinds is one atomic `Batch` (a crash keeps all
//! of it or none). sled's multi-tree transactions gave the same guarantee at several
//! times the cost; measured in `benches/queue.rs`.

use std::collections::BTreeMap;

use sled::{IVec, Tree};

use super::StoreError;

/// One kind of record: a prefix in the shared tree.
#[derive(Clone, Debug)]
pub(super) struct Space {
    tree: Tree,
    tag: u8,
}

impl Space {
    /// The space with prefix `tag` in `tree`.
    pub(super) fn new(tree: &Tree, tag: u8) -> Self {
        Self {
            tree: tree.clone(),
            tag,
        }
    }

    /// `key` with the space's prefix: its key in the shared tree.
    pub(super) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(self.tag);
        k.extend_from_slice(key);
        k
    }

    /// Reads one value.
    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, StoreError> {
        Ok(self.tree.get(self.key(key.as_ref()))?)
    }

    /// Writes one value (atomic on its own).
    pub(super) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<IVec>,
    ) -> Result<(), StoreError> {
        self.tree.insert(self.key(key.as_ref()), value)?;
        Ok(())
    }

    /// Removes one value (atomic on its own).
    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.tree.remove(self.key(key.as_ref()))?;
        Ok(())
    }

    /// Entries whose key starts with `prefix`, in key order, keys without the space tag.
    pub(super) fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl DoubleEndedIterator<Item = Result<(IVec, IVec), StoreError>> {
        self.tree
            .scan_prefix(self.key(prefix.as_ref()))
            .map(|item| {
                item.map(|(k, v)| (IVec::from(&k[1..]), v))
                    .map_err(StoreError::from)
            })
    }

    /// Every entry of the space, in key order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = Result<(IVec, IVec), StoreError>> {
        self.scan_prefix([])
    }

    /// Counts entries (a scan: for status output, not hot paths).
    pub(super) fn count(&self) -> usize {
        self.iter().count()
    }
}

/// Changes to several spaces, applied at once by [`apply`]. Reads through
/// [`Writes::get`] see what is staged already, so one batch may edit a record twice
/// (two builds leaving the same shelf) without losing the first edit, and the
/// admissions of one group commit see each other's (see `group`).
#[derive(Default)]
pub(super) struct Writes {
    staged: BTreeMap<Vec<u8>, Option<IVec>>,
    /// What each change replaced (`None`: the key was not staged), oldest first, so
    /// [`Writes::undo_to`] can take back the changes of one failed admission.
    undo: Vec<(Vec<u8>, Option<Option<IVec>>)>,
}

/// A point in a [`Writes`] to go back to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Savepoint(usize);

impl Writes {
    /// Queues a write.
    pub(super) fn insert(&mut self, space: &Space, key: impl AsRef<[u8]>, value: impl Into<IVec>) {
        self.stage(space.key(key.as_ref()), Some(value.into()));
    }

    /// Queues a removal.
    pub(super) fn remove(&mut self, space: &Space, key: impl AsRef<[u8]>) {
        self.stage(space.key(key.as_ref()), None);
    }

    fn stage(&mut self, key: Vec<u8>, value: Option<IVec>) {
        let before = self.staged.insert(key.clone(), value);
        self.undo.push((key, before));
    }

    /// Where the staged changes stand now.
    pub(super) fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Takes back every change staged since `point`.
    pub(super) fn undo_to(&mut self, point: Savepoint) {
        while self.undo.len() > point.0 {
            let Some((key, before)) = self.undo.pop() else {
                break;
            };
            match before {
                Some(value) => self.staged.insert(key, value),
                None => self.staged.remove(&key),
            };
        }
    }

    /// The value as it will be once this batch is applied.
    pub(super) fn get(
        &self,
        space: &Space,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<IVec>, StoreError> {
        match self.staged.get(&space.key(key.as_ref())) {
            Some(staged) => Ok(staged.clone()),
            None => space.get(key),
        }
    }

    /// The greatest key under `prefix` in `space` (without the space tag) as this batch
    /// leaves it: staged keys count, staged removals do not.
    pub(super) fn last_key(
        &self,
        space: &Space,
        prefix: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let full = space.key(prefix);
        let staged = self
            .staged
            .range(full.clone()..)
            .take_while(|(k, _)| k.starts_with(&full))
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k[1..].to_vec())
            .last();
        let mut stored = None;
        for item in space.scan_prefix(prefix).rev() {
            let key = item?.0;
            if !matches!(self.staged.get(&space.key(&key)), Some(None)) {
                stored = Some(key.to_vec());
                break;
            }
        }
        Ok(staged.max(stored))
    }

    /// What sled has to do: nothing, one write, or an atomic batch.
    fn into_parts(self) -> Parts {
        if self.staged.len() <= 1 {
            return match self.staged.into_iter().next() {
                Some((key, value)) => Parts::One(key, value),
                None => Parts::None,
            };
        }
        let mut batch = sled::Batch::default();
        for (key, value) in self.staged {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        Parts::Many(batch)
    }
}

/// Applies staged writes to `tree` atomically (all survive a crash, or none). sled
/// logs a batch marker for every batch, so an empty set writes nothing and a single
/// write goes alone (atomic by itself).
pub(super) fn apply(tree: &Tree, writes: Writes) -> Result<(), StoreError> {
    match writes.into_parts() {
        Parts::None => {}
        Parts::One(key, Some(value)) => {
            tree.insert(key, value)?;
        }
        Parts::One(key, None) => {
            tree.remove(key)?;
        }
        Parts::Many(batch) => tree.apply_batch(batch)?,
    }
    Ok(())
}

/// Staged writes as sled applies them.
enum Parts {
    /// Nothing staged.
    None,
    /// One key set (`Some`) or removed (`None`).
    One(Vec<u8>, Option<IVec>),
    /// Several, applied as one atomic batch.
    Many(sled::Batch),
}
