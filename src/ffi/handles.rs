//! Handle tables: a handle given to C is the address of its object, and every call looks it
//! up here instead of dereferencing it, so that a NULL, stale (destroyed) or foreign pointer
//! is refused with the family's invalid-argument code rather than a crash.

use std::ffi::c_void;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::id_map::IdMap;
use crate::store::StoreError;

/// Live handles of one kind (engines, store clients).
pub struct HandleTable<T> {
    /// What a handle is called in messages: `"engine"`, `"store"`.
    noun: &'static str,
    /// What a live one is: `"a live engine"`, `"a live store handle"`.
    live: &'static str,
    map: RwLock<Option<IdMap<usize, Arc<T>>>>,
}

/// A refused handle; becomes the family's invalid-argument error.
#[derive(Debug)]
pub struct HandleError(String);

impl From<HandleError> for crate::engine::Error {
    fn from(e: HandleError) -> Self {
        crate::engine::Error::invalid(e.0)
    }
}

impl From<HandleError> for StoreError {
    fn from(e: HandleError) -> Self {
        StoreError::invalid(e.0)
    }
}

impl<T> HandleTable<T> {
    pub const fn new(noun: &'static str, live: &'static str) -> Self {
        HandleTable { noun, live, map: RwLock::new(None) }
    }

    /// Adds `value` and returns its handle, owned by the caller until [`HandleTable::remove`].
    pub fn insert(&self, value: T) -> *mut c_void {
        let value = Arc::new(value);
        let handle = Arc::as_ptr(&value) as usize;
        self.map.write().get_or_insert_with(IdMap::default).insert(handle, value);
        handle as *mut c_void
    }

    /// Removes `handle` and returns its object, so that the caller shuts it down; `Ok(None)`
    /// for NULL (destroying NULL is a no-op).
    pub fn remove(&self, handle: *mut c_void) -> Result<Option<Arc<T>>, HandleError> {
        if handle.is_null() {
            return Ok(None);
        }
        let removed = self.map.write().as_mut().and_then(|m| m.remove(&(handle as usize)));
        match removed {
            Some(v) => Ok(Some(v)),
            None => Err(HandleError(format!("{} {handle:p} is not {}", self.noun, self.live))),
        }
    }

    /// The object behind `handle`.
    pub fn get(&self, handle: *mut c_void) -> Result<Arc<T>, HandleError> {
        self.with(handle, |v| Ok(v.clone()))
    }

    /// Runs `f` on the object behind `handle` under the table's read lock, without cloning its
    /// `Arc`: for calls that never block (the status poll). Calls that may wait use
    /// [`HandleTable::get`], so that no lock is held while they wait.
    pub fn with<R, E: From<HandleError>>(
        &self,
        handle: *mut c_void,
        f: impl FnOnce(&Arc<T>) -> Result<R, E>,
    ) -> Result<R, E> {
        if handle.is_null() {
            return Err(HandleError(format!("{} is NULL", self.noun)).into());
        }
        let map = self.map.read();
        match map.as_ref().and_then(|m| m.get(&(handle as usize))) {
            Some(v) => f(v),
            None => Err(HandleError(format!("{} {handle:p} is not {} (destroyed?)", self.noun, self.live)).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_stale_and_foreign_handles_are_refused() {
        let table: HandleTable<u32> = HandleTable::new("thing", "a live thing");
        let h = table.insert(7);
        assert_eq!(*table.get(h).unwrap(), 7);
        assert_eq!(table.get(std::ptr::null_mut()).unwrap_err().0, "thing is NULL");
        let foreign = 0x10 as *mut c_void;
        assert!(table.get(foreign).unwrap_err().0.ends_with("is not a live thing (destroyed?)"));
        assert!(table.remove(std::ptr::null_mut()).unwrap().is_none());
        assert_eq!(*table.remove(h).unwrap().unwrap(), 7);
        assert!(table.remove(h).unwrap_err().0.ends_with("is not a live thing"));
        assert!(table.get(h).is_err());
    }
}
