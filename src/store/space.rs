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

/// Changes to several spaces, applied at once by [`super::Store::apply`]. Reads through
/// [`Writes::get`] see what is staged already, so one batch may edit a record twice
/// (two builds leaving the same shelf) without losing the first edit.
#[derive(Default)]
pub(super) struct Writes(BTreeMap<Vec<u8>, Option<IVec>>);

impl Writes {
    /// Queues a write.
    pub(super) fn insert(&mut self, space: &Space, key: impl AsRef<[u8]>, value: impl Into<IVec>) {
        self.0.insert(space.key(key.as_ref()), Some(value.into()));
    }

    /// Queues a removal.
    pub(super) fn remove(&mut self, space: &Space, key: impl AsRef<[u8]>) {
        self.0.insert(space.key(key.as_ref()), None);
    }

    /// The value as it will be once this batch is applied.
    pub(super) fn get(
        &self,
        space: &Space,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<IVec>, StoreError> {
        match self.0.get(&space.key(key.as_ref())) {
            Some(staged) => Ok(staged.clone()),
            None => space.get(key),
        }
    }

    /// The greatest key under `prefix` in `space` that this batch writes (not
    /// removes), without the space's tag.
    pub(super) fn last_staged(&self, space: &Space, prefix: &[u8]) -> Option<Vec<u8>> {
        let start = space.key(prefix);
        self.0
            .range(start.clone()..)
            .take_while(|(key, _)| key.starts_with(&start))
            .filter(|(_, value)| value.is_some())
            .last()
            .map(|(key, _)| key[1..].to_vec())
    }

    /// What sled has to do: nothing, one write, or an atomic batch.
    pub(super) fn into_parts(self) -> Parts {
        if self.0.len() <= 1 {
            return match self.0.into_iter().next() {
                Some((key, value)) => Parts::One(key, value),
                None => Parts::None,
            };
        }
        let mut batch = sled::Batch::default();
        for (key, value) in self.0 {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        Parts::Many(batch)
    }
}

/// Staged writes as sled applies them.
pub(super) enum Parts {
    /// Nothing staged.
    None,
    /// One key set (`Some`) or removed (`None`).
    One(Vec<u8>, Option<IVec>),
    /// Several, applied as one atomic batch.
    Many(sled::Batch),
}
