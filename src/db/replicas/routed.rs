//! [`Routed`]: a pooled connection and the [`Server`] it is on.

use std::ops::{Deref, DerefMut};

use diesel_async::AsyncPgConnection;

use crate::db;

/// Which server a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The primary: it takes writes.
    Primary,
    /// The replica at this index of [`ReplicaConfig::urls`](super::ReplicaConfig::urls).
    Replica(usize),
}

/// A pooled connection and the server it is on. Derefs to the connection.
pub struct Routed {
    pub(super) conn: db::PooledConnection,
    /// Where the connection is.
    pub server: Server,
}

impl Routed {
    /// The pooled connection alone (back in its pool when dropped).
    pub fn into_inner(self) -> db::PooledConnection {
        self.conn
    }
}

impl Deref for Routed {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Routed {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}
